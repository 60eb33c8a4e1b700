"""`python -m ggvision.inference`: the com.ggvision.Inference component process."""

from .component import main

raise SystemExit(main())
