"""`python -m ggvision.uplink`: the com.ggvision.Uplink component process."""

from .component import main

raise SystemExit(main())
