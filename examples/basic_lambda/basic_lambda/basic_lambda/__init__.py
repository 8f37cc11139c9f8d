"""A basic Lambda handler with no external dependencies."""

import json
from pathlib import Path

INSTANCE_CONFIG = Path(__file__).resolve().parent.parent / "instance" / "config.json"


def handler(event, context):
    config = json.loads(INSTANCE_CONFIG.read_text()) if INSTANCE_CONFIG.exists() else {}
    return {"statusCode": 200, "body": json.dumps({"greeting": config.get("greeting", "hello"), "event": event})}
