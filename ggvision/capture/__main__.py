"""`python -m ggvision.capture`: the com.ggvision.Capture component process."""

from .component import main

raise SystemExit(main())
