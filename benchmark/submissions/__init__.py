"""Submissions: third-party merge methods and defenses in `submissions/<slug>/` (a `submission.toml` plus
code), validated, run in a sandbox, stored with provenance and reproduced. Guide: submissions/README.md;
reference: docs/submitting.md.

Importing this package is cheap (no torch); the heavy parts load on use.
"""

from benchmark.submissions.loader import (
    Submission,
    content_hash,
    list_slugs,
    load_submission,
    submissions_dir,
)
from benchmark.submissions.manifest import (
    ManifestError,
    SubmissionError,
    SubmissionManifest,
    json_schema,
    load_manifest,
    parse_manifest,
)
from benchmark.submissions.registration import register_submission
from benchmark.submissions.sandbox import Limits

__all__ = [
    "Limits",
    "ManifestError",
    "Submission",
    "SubmissionError",
    "SubmissionManifest",
    "content_hash",
    "json_schema",
    "list_slugs",
    "load_manifest",
    "load_submission",
    "parse_manifest",
    "register_submission",
    "submissions_dir",
]
