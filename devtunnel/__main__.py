from devtunnel.cli import main

raise SystemExit(main())
