"""A SAM-style handler (Handler: app.lambda_handler): its directory's contents are the function archive."""

import json

import attrs


@attrs.frozen
class Greeting:
    message: str


def lambda_handler(event, context):
    greeting = Greeting(message=f"hello {event.get('name', 'world')}")
    return {"statusCode": 200, "body": json.dumps(attrs.asdict(greeting))}
