"""`python -m ggvision.config [FOLDER]`: write every component's configuration JSON Schema (default docs/config)."""

import sys
from pathlib import Path

from .components import write_schemas

for path in write_schemas(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/config")):
    print(path)
