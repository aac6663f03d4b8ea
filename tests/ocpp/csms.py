"""An operator's CSMS for polegate's proxy-mode tests, on the mobilityhouse `ocpp`
library. Listens on 127.0.0.1:PORT, path /<charge point id>, subprotocol ocpp1.6, and
requires Basic auth CP:PASSWORD when PASSWORD is given.

Answers: BootNotification Accepted (interval 120), StartTransaction with transactionId
777 and idTagInfo Blocked for idTag "BLOCKED", others Accepted. Prints {"op": "listening"},
{"op": "connected", "auth": ...}, and {"op": "got", "action", "payload"} per call.
stdin: {"op": "call", "action": "Reset", "payload": {...}} sends a call to the charger
and prints {"op": "result", ...}.
Usage: csms.py PORT [PASSWORD|-]
"""
import asyncio
import json
import sys
from datetime import datetime, timezone

import websockets
from ocpp.charge_point import camel_to_snake_case
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action

CURRENT = {}


def emit(obj):
    print(json.dumps(obj), flush=True)


def now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Csms(ChargePoint):
    async def route_message(self, raw_msg):
        try:
            msg = json.loads(raw_msg)
            if msg[0] == 2:
                emit({"op": "got", "action": msg[2], "payload": msg[3]})
        except Exception:  # noqa: BLE001
            pass
        return await super().route_message(raw_msg)

    @on(Action.boot_notification)
    def boot(self, **kw):
        return call_result.BootNotification(current_time=now(), interval=120, status="Accepted")

    @on(Action.heartbeat)
    def heartbeat(self, **kw):
        return call_result.Heartbeat(current_time=now())

    @on(Action.status_notification)
    def status(self, **kw):
        return call_result.StatusNotification()

    @on(Action.meter_values)
    def meter(self, **kw):
        return call_result.MeterValues()

    @on(Action.start_transaction)
    def start_tx(self, id_tag, **kw):
        status = "Blocked" if id_tag == "BLOCKED" else "Accepted"
        return call_result.StartTransaction(transaction_id=777, id_tag_info={"status": status})

    @on(Action.stop_transaction)
    def stop_tx(self, **kw):
        return call_result.StopTransaction()


async def handler(ws):
    cp_id = ws.request.path.strip("/")
    cp = Csms(cp_id, ws, response_timeout=10)
    CURRENT["cp"] = cp
    emit({"op": "connected", "id": cp_id, "auth": ws.request.headers.get("Authorization")})
    try:
        await cp.start()
    except websockets.exceptions.ConnectionClosed:
        emit({"op": "disconnected"})


async def commands():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        cmd = json.loads(line)
        if cmd["op"] == "call":
            cls = getattr(call, cmd["action"])
            res = await CURRENT["cp"].call(cls(**camel_to_snake_case(cmd["payload"])))
            emit({"op": "result", "action": cmd["action"], "payload": vars(res)})
        elif cmd["op"] == "close":
            return


async def main():
    port = int(sys.argv[1])
    password = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != "-" else None

    async def check(conn, request):
        if password is not None:
            import base64
            cp_id = request.path.strip("/")
            want = "Basic " + base64.b64encode(f"{cp_id}:{password}".encode()).decode()
            if request.headers.get("Authorization") != want:
                return conn.respond(401, "bad credentials\n")
        return None

    async with websockets.serve(handler, "127.0.0.1", port, subprotocols=["ocpp1.6"], process_request=check):
        emit({"op": "listening"})
        await commands()


if __name__ == "__main__":
    asyncio.run(main())
