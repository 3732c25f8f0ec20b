"""The open evaluation harness: does a cloak protect against style mimicry?

    config = EvalConfig(artist=Path("works"), results=Path("results"), model="default")
    outcome = evaluate(config)        # results.json, results.md, results.png

Paper section 6: a LoRA mimicry attack on the artist's (protected) works, the CLIP genre
shift rate, protection conditions at equal budget and the mimic's countermeasures. With the
demo bundle the numbers carry no meaning about protection, and every report says so.
"""

from .run import Cell, EvalConfig, Outcome, evaluate, plan

__all__ = ["Cell", "EvalConfig", "Outcome", "evaluate", "plan"]
