"""A one-shot job: says what it is and what the assemble hook recorded, then exits."""
import json
import os
import sys

with open("build-info.json") as f:
    info = json.load(f)
target = os.environ.get("GREETING_TARGET", "nobody")
print(f"hello {target} from {os.environ.get('APP_FILE')} (built with Python {info['python']})")
print(f"arguments: {' '.join(sys.argv[1:]) or '(none)'}")
