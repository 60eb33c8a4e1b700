"""Every component's configuration model against its recipe and its docs: the recipe's DefaultConfiguration is
valid and agrees with the model's defaults (one place for defaults), the committed JSON Schemas are the ones
the models make, and every model refuses unknown keys with the path users see."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import yaml
from harness import REPO

from ggvision.config.base import ConfigError, parse
from ggvision.config.components import MODELS, model_of, schema_of

# Top-level keys where a recipe ships the demo's own data rather than a default (the demo camera, the demo
# models, the demo site's budget), each with why.
DEMO_DATA = {
    "com.ggvision.Capture": {"cameras", "sensors"},  # the demo camera synthetic-1 and sensor thermal-1
    "com.ggvision.Inference": {"models"},  # the demo models' components
    "com.ggvision.Filter": {"cameras", "defaults"},  # the demo camera's zones and rules; the demo's budget
}


def _defaults(component: str) -> dict[str, Any]:
    recipe = yaml.safe_load((REPO / "components" / component / "recipe.yaml").read_text())
    return recipe["ComponentConfiguration"]["DefaultConfiguration"]


@pytest.mark.parametrize("component", sorted(MODELS))
def test_recipe_default_configuration_is_valid(component: str) -> None:
    parse(model_of(component), _defaults(component))


@pytest.mark.parametrize("component", sorted(MODELS))
def test_recipe_defaults_agree_with_the_model(component: str) -> None:
    model = model_of(component)
    from_model = parse(model, {}).model_dump(by_alias=True, mode="json")
    from_recipe = parse(model, _defaults(component)).model_dump(by_alias=True, mode="json")
    differ = {k for k in from_model if from_model[k] != from_recipe[k]} - DEMO_DATA.get(component, set())
    assert differ == set(), {k: (from_model[k], from_recipe[k]) for k in differ}


@pytest.mark.parametrize("component", sorted(MODELS))
def test_committed_schema_is_the_models(component: str) -> None:
    path = REPO / "docs" / "config" / f"{component}.schema.json"
    assert path.exists(), f"{path} missing: run `python -m ggvision.config`"
    assert json.loads(path.read_text()) == schema_of(component), f"{path} is stale: run `python -m ggvision.config`"


@pytest.mark.parametrize("component", sorted(MODELS))
def test_recipe_defaults_validate_against_the_json_schema(component: str) -> None:
    jsonschema.validate(_defaults(component), schema_of(component))


@pytest.mark.parametrize("component", sorted(MODELS))
def test_unknown_keys_are_refused_by_name(component: str) -> None:
    with pytest.raises(ConfigError, match=r"unknown configuration keys: bogusKey"):
        parse(model_of(component), {**_defaults(component), "bogusKey": 1})


@pytest.mark.parametrize("component", sorted(MODELS))
def test_every_component_takes_cpus_and_refuses_a_bad_list_by_name(component: str) -> None:
    """`cpus` (ggvision/component/cpus.py applies it): a cpu list or a list of numbers, normalised; a bad one names
    the key; the JSON schema accepts what the model accepts."""
    from ggvision.config.cpulist import cpu_list

    model = model_of(component)
    assert parse(model, {"cpus": "0,2-3"}).cpus == (0, 2, 3)
    assert parse(model, {"cpus": [3, 1]}).cpus == (1, 3)
    assert parse(model, {"cpus": ""}).cpus is None and parse(model, {}).cpus is None
    for bad, words in (("3-1", "runs backwards"), ("x", "cpu list"), ([True], "neither"), ([5000], "0 to 4095")):
        with pytest.raises(ConfigError) as e:
            parse(model, {"cpus": bad})
        assert "cpus" in str(e.value) and words in str(e.value), (bad, str(e.value))
    jsonschema.validate({"cpus": "0-1"}, schema_of(component))
    jsonschema.validate({"cpus": [0, 1]}, schema_of(component))
    assert cpu_list((0, 1, 2, 5, 7, 8)) == "0-2,5,7-8"
