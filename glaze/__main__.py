from glaze.cli import main

raise SystemExit(main())
