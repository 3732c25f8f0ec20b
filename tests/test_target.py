import numpy as np
import pytest
from conftest import painting

from glaze.engine import Cancelled, target
from glaze.engine.profiles import ProfileStore, resolve_target
from glaze.engine.progress import Progress
from glaze.engine.target import (
    CentroidCache,
    artist_centroid,
    candidate_centroids,
    candidate_styles,
    percentile_band,
    pick_target,
)
from glaze.options import DEFEND

STYLES = candidate_styles()[:8]


ORIGIN = {"sd": np.zeros(2)}


def line_of_centroids(count: int = 100) -> dict[str, dict[str, np.ndarray]]:
    """Candidates at distances 1..count from the origin, named by their distance."""
    return {f"style {d:03d}": {"sd": np.array([float(d), 0.0])} for d in range(1, count + 1)}


def test_shipped_candidates():
    styles = candidate_styles()
    assert len(styles) >= 100 and len(set(styles)) == len(styles)
    assert all(" by " in style for style in styles)


def test_band_is_the_50th_to_75th_percentile_of_distance():
    band = percentile_band(ORIGIN, line_of_centroids())
    # numpy's percentiles of 1..100 are 50.5 and 75.25
    assert band == [f"style {d:03d}" for d in range(51, 76)]


def test_every_extractor_counts_alike_whatever_its_scale():
    # SD sees the styles at distances d = 1..100; FLUX at 1000 * e, e a permutation of d.
    centroids = line_of_centroids()
    order = np.random.default_rng(0).permutation(np.arange(1, 101))
    for (_, seen), e in zip(sorted(centroids.items()), order, strict=True):
        seen["flux"] = np.array([0.0, 1000.0 * e])
    artist = {"sd": np.zeros(2), "flux": np.zeros(2)}
    band = percentile_band(artist, centroids)
    # Each divided by its median (50.5 and 50500): the band of d + e, not of FLUX alone.
    combined = {name: centroids[name]["sd"][0] + centroids[name]["flux"][1] / 1000
                for name in centroids}
    low, high = np.percentile(list(combined.values()), [50, 75])
    assert band == sorted(name for name, d in combined.items() if low <= d <= high)
    flux_alone = percentile_band({"flux": np.zeros(2)}, centroids)
    assert len(set(band) ^ set(flux_alone)) > 10


def test_pick_is_in_the_band_and_reproducible():
    centroids = line_of_centroids()
    band = set(percentile_band(ORIGIN, centroids))
    picks = [pick_target(ORIGIN, centroids, seed) for seed in range(20)]
    assert set(picks) <= band
    assert len(set(picks)) > 5  # the seed matters
    assert picks == [pick_target(ORIGIN, centroids, seed) for seed in range(20)]


def test_centroids_are_cached_per_bundle(bundle, monkeypatch):
    calls = []
    real_generate = target.generate

    def counting_generate(*args, **kwargs):
        calls.append(args[1])
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(target, "generate", counting_generate)
    messages = []
    first = candidate_centroids(bundle, STYLES, progress=Progress(
        lambda fraction, message: messages.append(message)))
    assert calls == STYLES
    counts = [m for m in messages if m.startswith("target-style centroids")]
    assert len(counts) == len(STYLES) and "left" not in counts[-1]
    assert all(", about " in m and " left" in m for m in counts[:-1])  # the time left
    again = candidate_centroids(bundle, STYLES, CentroidCache(bundle))  # read from disk
    assert calls == STYLES  # nothing generated again
    for style in STYLES:
        assert set(first[style]) == set(DEFEND.choices)  # every extractor's space
        for name, centroid in first[style].items():
            assert np.allclose(centroid, again[style][name])
    assert len({tuple(np.round(c["flux"], 6)) for c in first.values()}) == len(STYLES)


def test_the_cache_is_written_at_intervals_and_when_a_run_ends(bundle, monkeypatch):
    """Rewriting the whole file after every style made it quadratic; a cancelled run still
    keeps what it computed."""
    writes = []
    real_write = target.storage.write_json
    monkeypatch.setattr(target.storage, "write_json",
                        lambda path, data: (writes.append(len(data)), real_write(path, data)))
    candidate_centroids(bundle, STYLES[:3])
    assert writes == [3]  # once, at the end (the styles took far less than SAVE_EVERY)
    monkeypatch.setattr(CentroidCache, "SAVE_EVERY", 0.0)
    candidate_centroids(bundle, STYLES[3:6])
    assert writes[1:] == [5, 6]  # the 2nd and 3rd style each came due (the 1st starts the
    # clock) and the end had nothing new to write
    monkeypatch.setattr(CentroidCache, "SAVE_EVERY", 1e9)
    cache = CentroidCache(bundle)
    with pytest.raises(Cancelled):  # cancelled once the 7th style is computed
        candidate_centroids(bundle, STYLES, cache,
                            Progress(cancel=lambda: STYLES[6] in cache.values))
    assert writes[-1] == 7  # what the cancelled run computed was saved
    assert CentroidCache(bundle).get(STYLES[6]) is not None


def test_new_profile_picks_from_the_band_and_keeps_its_pick(bundle, monkeypatch):
    artworks = [painting(64, 96, seed=s) for s in range(3)]
    profile = resolve_target(bundle, "alice", artworks, styles=STYLES, seed=1)
    expected_band = percentile_band(artist_centroid(bundle, artworks),
                                    candidate_centroids(bundle, STYLES))
    assert profile.chosen_by == "auto" and profile.target_style in expected_band
    assert ProfileStore().path("alice").is_file()

    def no_recompute(*args, **kwargs):
        raise AssertionError("a stored profile must not choose again")

    monkeypatch.setattr(target, "choose_target", no_recompute)  # what resolve_target calls
    later = resolve_target(bundle, "alice", [painting(64, 64, seed=9)], styles=STYLES, seed=7)
    assert later.target_style == profile.target_style


def test_same_artworks_and_seed_pick_the_same_target(bundle, tmp_path):
    artworks = [painting(64, 96, seed=s) for s in range(2)]
    picks = {resolve_target(bundle, "bob", artworks, styles=STYLES, seed=2,
                            store=ProfileStore(tmp_path / f"p{i}")).target_style
             for i in range(2)}
    assert len(picks) == 1


def test_user_override_is_stored(bundle):
    chosen = resolve_target(bundle, "carol", [], override="Ukiyo-e woodblock print by Hokusai")
    assert chosen.chosen_by == "user"
    assert resolve_target(bundle, "carol", []).target_style == chosen.target_style


def test_a_new_profile_needs_artworks(bundle):
    with pytest.raises(ValueError, match="at least one"):
        resolve_target(bundle, "dave", [], styles=STYLES)


@pytest.mark.parametrize("name", ["../escape", "", "a/b", "x" * 65])
def test_profile_names_are_checked(name):
    with pytest.raises(ValueError, match="invalid profile name"):
        ProfileStore().path(name)
