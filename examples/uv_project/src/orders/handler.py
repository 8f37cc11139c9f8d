"""Handler: orders.handler.lambda_handler (the project's own package goes with the function code)."""

import json

import attrs


@attrs.frozen
class Order:
    order_id: str
    quantity: int = 1


def lambda_handler(event, context):
    order = Order(order_id=str(event.get("order_id", "none")))
    return {"statusCode": 200, "body": json.dumps(attrs.asdict(order))}
