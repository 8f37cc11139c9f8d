"""Handler: inventory.handler.lambda_handler, with six installed exactly as poetry.lock pins it."""

import json

import six


def lambda_handler(event, context):
    items = {six.ensure_str(key): value for key, value in event.get("items", {}).items()}
    return {"statusCode": 200, "body": json.dumps({"items": items, "six": six.__version__})}
