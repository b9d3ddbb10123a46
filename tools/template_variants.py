#!/usr/bin/env python3
"""Writes infra/template.yaml once per parameter combination that changes
what deploys (IngestPath x Transport x StreamShards), with those values as
the defaults, so cfn-lint and checkov check each as it would deploy.

Run from the repository root: python3 tools/template_variants.py OUT_DIR
"""
import itertools
import os
import re
import sys

CHOICES = {
    "IngestPath": ["topics", "basic-ingest"],
    "Transport": ["sqs", "kinesis"],
    "StreamShards": ["0", "4"],
}


def with_default(text, name, value):
    """The template with parameter `name`'s Default set to `value`."""
    pattern = re.compile(rf"(\n  {name}:\n(?:    .*\n)*?    Default: )([^\n]*)")
    changed, count = pattern.subn(lambda m: m.group(1) + value, text, count=1)
    if count != 1:
        sys.exit(f"infra/template.yaml: no Default for parameter {name}")
    return changed


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    with open("infra/template.yaml") as source:
        template = source.read()
    for values in itertools.product(*CHOICES.values()):
        text = template
        for name, value in zip(CHOICES, values):
            text = with_default(text, name, value)
        name = "template-" + "-".join(values) + ".yaml"
        with open(os.path.join(out, name), "w") as variant:
            variant.write(text)
        print(os.path.join(out, name))


if __name__ == "__main__":
    main()
