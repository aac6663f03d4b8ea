"""An OCPP 1.6J charge point for polegate's tests, built on the mobilityhouse `ocpp`
library (which validates every frame against the official JSON schemas).

Driven line by line on stdin (JSON):
  {"op": "call", "action": "BootNotification", "payload": {...camelCase...}, "skip": false}
      -> {"op": "result", "action": ..., "payload": {...}} or {"op": "callerror", ...}
  {"op": "raw", "text": "..."}        sends a text frame as is
  {"op": "answers", "map": {"Reset": "Rejected", "UnlockConnector": "silent"}}
  {"op": "close"}
Prints every frame it receives as {"op": "in", "text": ...} and every CS call it
answers as {"op": "got", "action": ..., "payload": ...}.
Usage: charger.py URL CHARGE_POINT_ID [PASSWORD|-] [SUBPROTOCOL|-]
"""
import asyncio
import base64
import json
import sys

import websockets
from ocpp.charge_point import camel_to_snake_case
from ocpp.messages import MessageType, unpack
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action


def emit(obj):
    print(json.dumps(obj), flush=True)


ANSWERS = {}


class Charger(ChargePoint):
    async def route_message(self, raw_msg):
        emit({"op": "in", "text": raw_msg})
        try:
            msg = unpack(raw_msg)
        except Exception:  # noqa: BLE001 - report and keep going
            return await super().route_message(raw_msg)
        if msg.message_type_id == MessageType.Call:
            emit({"op": "got", "action": msg.action, "payload": msg.payload})
            if ANSWERS.get(msg.action) == "silent":
                return None
        return await super().route_message(raw_msg)

    def status(self, action, default):
        return ANSWERS.get(action, default)

    @on(Action.change_availability)
    def change_availability(self, **kw):
        return call_result.ChangeAvailability(status=self.status("ChangeAvailability", "Accepted"))

    @on(Action.set_charging_profile)
    def set_charging_profile(self, **kw):
        return call_result.SetChargingProfile(status=self.status("SetChargingProfile", "Accepted"))

    @on(Action.remote_start_transaction)
    def remote_start(self, **kw):
        return call_result.RemoteStartTransaction(status=self.status("RemoteStartTransaction", "Accepted"))

    @on(Action.remote_stop_transaction)
    def remote_stop(self, **kw):
        return call_result.RemoteStopTransaction(status=self.status("RemoteStopTransaction", "Accepted"))

    @on(Action.reset)
    def reset(self, **kw):
        return call_result.Reset(status=self.status("Reset", "Accepted"))

    @on(Action.unlock_connector)
    def unlock(self, **kw):
        return call_result.UnlockConnector(status=self.status("UnlockConnector", "Unlocked"))


async def commands(cp, ws):
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "close":
            await ws.close()
            return
        if op == "raw":
            await ws.send(cmd["text"])
        elif op == "answers":
            ANSWERS.update(cmd["map"])
        elif op == "call":
            cls = getattr(call, cmd["action"])
            payload = cls(**camel_to_snake_case(cmd["payload"]))
            try:
                res = await cp.call(payload, suppress=False, skip_schema_validation=cmd.get("skip", False))
                fields = {k: v for k, v in vars(res).items() if v is not None}
                emit({"op": "result", "action": cmd["action"], "payload": fields})
            except Exception as e:  # noqa: BLE001 - the test reads the failure
                emit({"op": "callerror", "action": cmd["action"], "error": repr(e)})


async def main():
    url, cp_id = sys.argv[1], sys.argv[2]
    password = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] != "-" else None
    proto = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] != "-" else "ocpp1.6"
    headers = {}
    if password is not None:
        token = base64.b64encode(f"{cp_id}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        ws = await websockets.connect(f"{url}/{cp_id}", subprotocols=[proto], additional_headers=headers, open_timeout=10)
    except websockets.exceptions.InvalidStatus as e:
        emit({"op": "refused", "status": e.response.status_code})
        return
    except Exception as e:  # noqa: BLE001
        emit({"op": "refused", "status": 0, "error": repr(e)})
        return
    emit({"op": "connected", "subprotocol": ws.subprotocol})
    cp = Charger(cp_id, ws, response_timeout=10)
    reader = asyncio.create_task(cp.start())
    reader.add_done_callback(lambda _t: emit({"op": "disconnected"}))
    await commands(cp, ws)
    reader.cancel()
    emit({"op": "closed"})


if __name__ == "__main__":
    asyncio.run(main())
