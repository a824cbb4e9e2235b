"""`python -m benchmark.submissions`: regenerate docs/submission.schema.json from the manifest model."""

from benchmark.submissions.manifest import write_schema

if __name__ == "__main__":
    print(f"wrote {write_schema()}")
