from xrayfactory.cli import main

raise SystemExit(main())
