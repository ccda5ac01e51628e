from whaled.cli import main

raise SystemExit(main())
