"""`python -m ggvision.health`: the com.ggvision.Health component process."""

from .component import main

raise SystemExit(main())
