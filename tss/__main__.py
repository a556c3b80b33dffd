from tss.cli import main

raise SystemExit(main())
