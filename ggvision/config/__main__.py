"""`python -m ggvision.config [FOLDER]`: write every component's configuration JSON Schema and the site file's
(default docs/config)."""

import json
import sys
from pathlib import Path

from .components import write_schemas
from .site import site_schema

folder = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/config")
for path in write_schemas(folder):
    print(path)
site = folder / "site.schema.json"
site.write_text(json.dumps(site_schema(), indent=2, sort_keys=True) + "\n")
print(site)
