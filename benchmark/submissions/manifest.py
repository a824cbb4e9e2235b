"""The submission manifest, `submissions/<slug>/submission.toml`: a pydantic model, its JSON Schema
(docs/submission.schema.json, regenerate with `python -m benchmark.submissions`) and error
messages that name the field and what is expected.

Example (see submissions/model_breadcrumbs/submission.toml)::

    name = "model_breadcrumbs"
    kind = "merge"
    authors = ["MohammadReza Davari", "Eugene Belilovsky"]
    paper_url = "https://arxiv.org/abs/2312.06795"
    code_url = "https://github.com/mergesec/mergesec/tree/main/submissions/model_breadcrumbs"
    license = "MIT"
    entry_point = "breadcrumbs:merge"
    tracks = ["merge", "transfer"]
    suites = ["digits"]

    [hyperparameters]
    scaling_coef = 0.3
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from benchmark.errors import MergesecError

MANIFEST = "submission.toml"
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "submission.schema.json"
KINDS = ("merge", "defense")
KNOWN_TRACKS = ("merge", "transfer", "backdoor")
NAME_PATTERN = r"^[a-z0-9][a-z0-9_\-]{1,63}$"
ENTRY_POINT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
URL_PATTERN = r"^https?://[^\s/$.?#][^\s]*$"
HParam = bool | int | float | str


class SubmissionError(MergesecError):
    """A submission that cannot be validated, run or reproduced. The message names the submission, the
    stage that failed (manifest, files, import, signature, merge, output, timeout, memory) and the fix."""


class ManifestError(SubmissionError):
    """A `submission.toml` that is not valid TOML or does not match the schema."""


class SubmissionManifest(BaseModel):
    """What a submission declares about itself. Unknown fields are errors (they are usually typos)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="mergesec submission manifest")

    name: str = Field(
        pattern=NAME_PATTERN,
        description="The method's name on the leaderboard; must equal the folder name (the slug). "
        "Lower-case letters, digits, '_' and '-', 2-64 characters.",
    )
    kind: Literal["merge", "defense"] = Field(
        description="'merge': a merging method fn(pretrained, finetuned, **hyperparameters) -> state dict. "
        "'defense': a pre-merge defense fn(pretrained, finetuned, **hyperparameters) -> list of state dicts "
        "(the cleaned fine-tuned models), evaluated by the backdoor track."
    )
    title: str = Field("", description="Display name, e.g. 'Model Breadcrumbs'.")
    description: str = Field("", description="One paragraph: what the method does.")
    authors: list[str] = Field(min_length=1, description="Authors of the method, e.g. ['A. Author'].")
    paper_url: str = Field(pattern=URL_PATTERN, description="http(s) URL of the paper (arXiv, proceedings).")
    code_url: str = Field(pattern=URL_PATTERN, description="http(s) URL of the code (this folder or upstream).")
    citation: str = Field("", description="Full reference: authors, title, venue, year.")
    license: str = Field(min_length=1, description="License of the code in this folder (SPDX id, e.g. 'MIT').")
    entry_point: str = Field(
        pattern=ENTRY_POINT_PATTERN,
        description="'module:callable': module is a .py file (or package) inside the folder, e.g. "
        "'breadcrumbs:merge' for breadcrumbs.py's function merge.",
    )
    tracks: list[Literal["merge", "transfer", "backdoor"]] = Field(
        min_length=1, description="The tracks the submission claims results for."
    )
    suites: list[str] = Field(min_length=1, description="The suites it claims results for, e.g. ['digits'].")
    needs: list[Literal["unlabelled_dev", "labelled_dev", "classifier_factory", "seed"]] = Field(
        default_factory=list,
        description="Merge methods only: the data the method receives besides the weights (as built-in methods "
        "declare it). 'seed': fn(pretrained, finetuned, seed, **hyperparameters). Any of 'unlabelled_dev' "
        "(dev images), 'labelled_dev' (dev images and labels), 'classifier_factory' (the backbone and the "
        "tasks' heads): fn(ctx, **hyperparameters), ctx with pretrained, finetuned, tasks, seed, dev_data, "
        "classifier_factory (docs/submitting.md).",
    )
    seed_free: bool = Field(
        False,
        description="Data-dependent merge methods only: true declares that the result does not depend on "
        "ctx.seed (dev data read in a fixed order, nothing random drawn), so one merge serves every seed; "
        "default false: the method reads the seed (docs/submitting.md).",
    )
    hyperparameters: dict[str, HParam] = Field(
        default_factory=dict,
        description="Keyword arguments passed to the entry point (bool, int, float or string); they are part "
        "of the results' identity.",
    )

    @field_validator("authors")
    @classmethod
    def _authors(cls, v: list[str]) -> list[str]:
        if any(not a.strip() for a in v):
            raise ValueError("every author must be a non-empty string")
        return v

    @field_validator("tracks", "suites")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"entries must be unique; got {v}")
        return v

    @field_validator("needs")
    @classmethod
    def _needs(cls, v: list[str], info: ValidationInfo) -> list[str]:
        if v and info.data.get("kind") == "defense":
            raise ValueError("only merge methods declare needs; a submitted defense runs data-free, so remove it")
        if len(set(v)) != len(v):
            raise ValueError(f"entries must be unique; got {v}")
        return v

    @field_validator("seed_free")
    @classmethod
    def _seed_free(cls, v: bool, info: ValidationInfo) -> bool:
        needs = set(info.data.get("needs") or [])
        if v and (info.data.get("kind") == "defense" or not needs - {"seed"}):
            raise ValueError("only a data-dependent merge method declares seed_free (a data-free one never "
                             "receives the seed); remove it")
        if v and "seed" in needs:
            raise ValueError('a method that needs "seed" draws random numbers from it and is not seed-free: '
                             "remove seed_free or the need")
        return v

    @field_validator("hyperparameters")
    @classmethod
    def _hparam_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in v if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k)]
        if bad:
            raise ValueError(f"names must be Python identifiers (they are keyword arguments); got {bad}")
        return v


def json_schema() -> dict[str, Any]:
    """The manifest's JSON Schema (draft 2020-12), as shipped in docs/submission.schema.json."""
    schema = SubmissionManifest.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://github.com/mergesec/mergesec/blob/main/docs/submission.schema.json", **schema}


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, str) else repr(value)


def _format_error(err: dict[str, Any]) -> str:
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".") or "(top level)"
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    field = SubmissionManifest.model_fields.get(str(err["loc"][0])) if err["loc"] else None
    if kind == "missing":
        hint = f" ({field.description})" if field and field.description else ""
        return f"field `{loc}`: required but missing{hint}"
    if kind == "extra_forbidden":
        valid = ", ".join(SubmissionManifest.model_fields)
        return f"field `{loc}`: unknown field; valid fields: {valid}"
    if kind == "literal_error":
        return f"field `{loc}`: expected {ctx.get('expected')}, got {_describe(value)}"
    if kind == "string_pattern_mismatch":
        what = {
            "name": "lower-case letters, digits, '_' or '-' (2-64 characters), e.g. 'my_method'",
            "entry_point": "'module:callable', e.g. 'breadcrumbs:merge'",
            "paper_url": "an http(s) URL", "code_url": "an http(s) URL",
        }.get(str(err["loc"][0]), f"a string matching {ctx.get('pattern')}")
        return f"field `{loc}`: expected {what}, got {_describe(value)}"
    if kind in ("too_short", "string_too_short"):
        return f"field `{loc}`: must not be empty"
    if kind == "value_error":
        return f"field `{loc}`: {ctx.get('error', err['msg'])!s}"
    expected = err["msg"].removeprefix("Input should be ").removeprefix("input should be ")
    return f"field `{loc}`: expected {expected}, got {_describe(value)}"


def parse_manifest(data: dict[str, Any], where: str = MANIFEST) -> SubmissionManifest:
    """Validate manifest `data`; raises `ManifestError` listing every problem, one per line."""
    try:
        return SubmissionManifest.model_validate(data)
    except ValidationError as e:
        lines: list[str] = []
        for err in e.errors(include_url=False):
            loc = err["loc"]
            if len(loc) == 3 and loc[0] == "hyperparameters":  # one line per value, not per union member
                line = (f"{where}: field `hyperparameters.{loc[1]}`: expected a bool, int, float or string, "
                        f"got {_describe(err.get('input'))}")
            else:
                line = f"{where}: {_format_error(err)}"
            if line not in lines:
                lines.append(line)
        raise ManifestError("\n".join(lines)) from None


def load_manifest(folder: Path | str) -> SubmissionManifest:
    """Read and validate `<folder>/submission.toml`."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ManifestError(
            f"{path}: not found. A submission folder holds a {MANIFEST}; copy one from "
            "submissions/model_breadcrumbs/ and edit it (guide: submissions/README.md)"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: not valid TOML ({e}); check quotes and brackets") from None
    return parse_manifest(data, str(path))


def write_schema(path: Path = SCHEMA_PATH) -> Path:
    path.write_text(json.dumps(json_schema(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path
