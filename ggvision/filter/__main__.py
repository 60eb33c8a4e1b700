"""`python -m ggvision.filter`: the com.ggvision.Filter component process."""

from .component import main

raise SystemExit(main())
