import sys

try:
    from engine.cli import main
except KeyboardInterrupt:  # Ctrl-C while the libraries are still loading: stop quietly
    print("interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
