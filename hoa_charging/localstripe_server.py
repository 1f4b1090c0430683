"""localstripe, a fake Stripe for development and tests, run the way this project needs it.

    python -m hoa_charging.localstripe_server --port 8420 [--store PATH]

What this adds to `localstripe --port N --from-scratch`, and why:

- **Its store file.** localstripe pickles its whole state to the fixed path /tmp/localstripe.pickle after
  every change (localstripe/resources.py: Store.dump_to_disk), so two runs on one machine (parallel test
  runs, a demo next to a test run, another user's file) overwrite each other's state or fail on the
  file's permissions. Here the state lives in ``--store PATH`` (the demo keeps it in .local/), or only in
  memory when no path is given (tests: each run starts from scratch).
- **Idempotency keys.** localstripe ignores the Idempotency-Key header; Stripe replays the first answer
  for a key (same method, path and parameters) instead of performing the call again, answers 400 to the
  same key with other parameters, and 409 while the first request is still running. Added here as Stripe
  documents it (https://docs.stripe.com/api/idempotent_requests), so that a retry after a lost answer
  behaves as it will in production.
- **Disputes.** localstripe has none. Here: GET /v1/disputes/<id>, and for tests and the demo
  POST /_test/disputes (charge, reason), POST /_test/disputes/<id>/update (status: an open dispute's or an
  inquiry's) and POST /_test/disputes/<id>/close (status won or lost), which send charge.dispute.created /
  charge.dispute.updated / charge.dispute.closed webhooks like Stripe.
- **Refund webhooks.** Stripe sends charge.refunded when a refund is made; localstripe sends nothing. And a
  refund that fails later (the card account was closed): POST /_test/refunds/<id>/fail (failure_reason)
  sets it failed and sends charge.refund.updated, as Stripe does days after the refund.

It is development tooling: it imports localstripe (a development dependency), never Stripe's SDK.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import pickle
import socket
from pathlib import Path

from aiohttp import web
from localstripe import resources, server
from localstripe.errors import UserError
from localstripe.resources import Charge, Event, Refund, StripeObject, schedule_webhook, store


def _use_store_file(path: Path | None) -> None:
    def load(self) -> None:
        if path is None or not path.exists():
            return
        with path.open("rb") as fh:
            old = pickle.load(fh)  # noqa: S301 - our own file, written below
        self.clear()
        self.update(old)

    def dump(self) -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            pickle.dump(dict(self), fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)

    resources.Store.try_load_from_disk = load
    resources.Store.dump_to_disk = dump


# --- idempotency keys -----------------------------------------------------------------------------

_answers: dict[tuple[str, str, str, str], tuple[str, int, bytes, str] | None] = {}


@web.middleware
async def idempotency_middleware(request: web.Request, handler):
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or not key:
        return await handler(request)
    cache_key = (request.headers.get("Authorization", ""), key, request.method, request.path)
    body = await request.read()
    fingerprint = hashlib.sha256(body).hexdigest()
    if cache_key in _answers:
        answer = _answers[cache_key]
        if answer is None:
            return web.json_response({"error": {"type": "idempotency_error", "message":
                                      "There is currently another in-progress request using this Idempotent Key"}},
                                     status=409)
        first_fingerprint, status, first_body, content_type = answer
        if first_fingerprint != fingerprint:
            return web.json_response({"error": {"type": "idempotency_error", "message":
                                      "Keys for idempotent requests can only be used with the same parameters "
                                      "they were first used with."}}, status=400)
        return web.Response(body=first_body, status=status, content_type=content_type,
                            headers={"Idempotent-Replayed": "true", "Idempotency-Key": key})
    _answers[cache_key] = None
    try:
        response = await handler(request)
    except BaseException:
        _answers.pop(cache_key, None)
        raise
    if response.status >= 500 or not isinstance(response, web.Response) or response.body is None:
        _answers.pop(cache_key, None)  # Stripe does not keep answers of requests that did not run
    else:
        _answers[cache_key] = (fingerprint, response.status, bytes(response.body), response.content_type)
    return response


# --- disputes and refund webhooks --------------------------------------------------------------------


class Dispute(StripeObject):
    object = "dispute"
    _id_prefix = "dp_"

    def __init__(self, charge=None, reason="fraudulent", status="needs_response", **kwargs):
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
        if not isinstance(charge, str) or not charge.startswith("ch_"):
            raise UserError(400, "Bad request")
        charge_obj = Charge._api_retrieve(charge)
        super().__init__()
        self.charge = charge
        self.payment_intent = charge_obj.payment_intent
        self.amount = charge_obj.amount
        self.currency = charge_obj.currency
        self.reason = reason
        self.status = status
        self.metadata = {}
        charge_obj.disputed = True


async def _open_dispute(request: web.Request) -> web.Response:
    data = await server.get_post_data(request) or {}
    dispute = Dispute(**data)
    schedule_webhook(Event("charge.dispute.created", dispute))
    return server.json_response(dispute._export())


async def _close_dispute(request: web.Request) -> web.Response:
    data = await server.get_post_data(request) or {}
    dispute = Dispute._api_retrieve(request.match_info["id"])
    if data.get("status") not in ("won", "lost"):
        raise UserError(400, "status must be won or lost")
    dispute.status = data["status"]
    schedule_webhook(Event("charge.dispute.closed", dispute))
    return server.json_response(dispute._export())


OPEN_DISPUTE_STATUSES = ("warning_needs_response", "warning_under_review", "warning_closed", "needs_response",
                         "under_review")


async def _update_dispute(request: web.Request) -> web.Response:
    data = await server.get_post_data(request) or {}
    dispute = Dispute._api_retrieve(request.match_info["id"])
    if data.get("status") not in OPEN_DISPUTE_STATUSES:
        raise UserError(400, "status must be one of " + ", ".join(OPEN_DISPUTE_STATUSES))
    dispute.status = data["status"]
    schedule_webhook(Event("charge.dispute.updated", dispute))
    return server.json_response(dispute._export())


async def _fail_refund(request: web.Request) -> web.Response:
    data = await server.get_post_data(request) or {}
    refund = Refund._api_retrieve(request.match_info["id"])
    if refund.status != "succeeded":
        raise UserError(400, f"only a succeeded refund can fail (this one is {refund.status})")
    refund.status = "failed"
    refund.failure_reason = str(data.get("failure_reason") or "expired_or_canceled_card")
    schedule_webhook(Event("charge.refund.updated", refund))
    return server.json_response(refund._export())


def _retrieve_dispute(request: web.Request) -> web.Response:
    return server.json_response(Dispute._api_retrieve(request.match_info["id"])._export())


def _send_refund_webhooks() -> None:
    original = Refund.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        with contextlib.suppress(RuntimeError):  # no event loop running: nothing to send to
            schedule_webhook(Event("charge.refunded", Charge._api_retrieve(self.charge)))

    Refund.__init__ = init


def build_app(store_path: Path | None) -> web.Application:
    _use_store_file(store_path)
    _send_refund_webhooks()
    app = server.app
    app.middlewares.insert(0, idempotency_middleware)
    app.router.add_get("/v1/disputes/{id}", _retrieve_dispute)
    app.router.add_post("/_test/disputes", _open_dispute)
    app.router.add_post("/_test/disputes/{id}/update", _update_dispute)
    app.router.add_post("/_test/disputes/{id}/close", _close_dispute)
    app.router.add_post("/_test/refunds/{id}/fail", _fail_refund)
    store.try_load_from_disk()
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--store", type=Path, default=None, help="keep the state in this file (default: memory)")
    args = parser.parse_args(argv)
    app = build_app(args.store)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s localstripe %(message)s")
    print(f"localstripe listening on http://{args.host}:{args.port}" + (f", state in {args.store}" if args.store
                                                                        else ", state in memory"), flush=True)
    web.run_app(app, sock=sock, print=None, access_log=logging.getLogger("aiohttp.access"))


if __name__ == "__main__":
    main()
