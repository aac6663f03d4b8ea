#!/bin/sh
# SNMP at cabinet scale (issue 24 item 6): the daemon (BIN, default the cabinet build)
# polls snmpsim (an agent in another process) for WINDOW seconds in three set-ups:
#   idle     no device (the baseline RSS)
#   switch   1 PoE switch agent ([[bus]] kind snmp) with 48 port devices (2 OIDs each)
#            and the switch itself, every POLL_MS (default 1000)
#   direct   50 devices with their own agent (snmp = { address }), every POLL_MS
# and prints the daemon's CPU (utime+stime over the window), its RSS at the end, the
# GETs and OIDs the agent received per second, and RSS per device over idle.
# Usage: benches/snmp_scale.sh [BIN]   (needs mosquitto and the test Python venv)
set -eu
BIN=${1:-target/cabinet/polegate}
PY=${POLEGATE_TEST_PYTHON:-target/pyenv/bin/python3}
WINDOW=${WINDOW:-30}
POLL_MS=${POLL_MS:-1000}
W=$(mktemp -d)
chmod 777 "$W"
trap 'kill $SIM $MQ 2>/dev/null || true; rm -rf "$W"' EXIT
mkdir -p "$W/data" "$W/plugins"
cp plugins/snmp/poe-switch.toml plugins/snmp/poe-port-camera.toml "$W/plugins/"
{
  echo "1.3.6.1.2.1.1.3.0|67|123456"
  for p in $(seq 1 48); do echo "1.3.6.1.2.1.105.1.1.1.3.1.$p|2|1"; done
  for p in $(seq 1 48); do echo "1.3.6.1.2.1.105.1.1.1.6.1.$p|2|3"; done
  echo "1.3.6.1.2.1.105.1.3.1.1.2.1|66|740"
  echo "1.3.6.1.2.1.105.1.3.1.1.4.1|66|310"
} | sort -t'|' -k1,1V > "$W/data/public.snmprec"
chmod -R a+rwX "$W"
printf public > "$W/community"
SNMP_PORT=$((20000 + $$ % 10000)); MQTT_PORT=$((SNMP_PORT + 1))
USER_ARGS=""; [ "$(id -u)" = 0 ] && USER_ARGS="--process-user=nobody --process-group=nogroup"
"$PY" -c 'import sys, dbm, dbm.dumb, encodings.latin_1, encodings.ascii, encodings.idna; from snmpsim.commands.responder import main; sys.argv[0]="snmpsim"; sys.exit(main())' \
  --data-dir="$W/data" --cache-dir="$W/cache" --agent-udpv4-endpoint=127.0.0.1:$SNMP_PORT \
  --logging-method=file:"$W/sim.log" --log-level=info $USER_ARGS &
SIM=$!
mosquitto -p $MQTT_PORT > /dev/null 2>&1 &
MQ=$!
sleep 3

head() {
  cat <<EOF
[gateway]
id = "bench"
state_dir = "$W/state-$1"
plugins_dirs = ["$W/plugins"]
[mqtt]
url = "mqtt://127.0.0.1:$MQTT_PORT"
connect_delay_max_ms = 0
[http]
listen = ""
EOF
}

config() {
  head "$1"
  case $1 in
    switch)
      printf '[[bus]]\nid = "sw"\nkind = "snmp"\naddress = "127.0.0.1:%s"\nversion = "2c"\ncommunity_file = "%s/community"\n' $SNMP_PORT "$W"
      printf '[[device]]\nid = "switch"\nprofile = "snmp-poe-switch"\npoll_ms = @POLL@\nsnmp = { bus = "sw" }\n'
      for p in $(seq 1 48); do
        printf '[[device]]\nid = "cam-%s"\nprofile = "snmp-poe-port-camera"\npoll_ms = @POLL@\nsnmp = { bus = "sw", index = %s }\n' $p $p
      done ;;
    direct)
      for d in $(seq 1 50); do
        printf '[[device]]\nid = "sw-%s"\nprofile = "snmp-poe-switch"\npoll_ms = @POLL@\nsnmp = { address = "127.0.0.1:%s", version = "2c", community_file = "%s/community" }\n' $d $SNMP_PORT "$W"
      done ;;
  esac
}

ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
rss_kb() { awk '/^VmRSS/ {print $2}' /proc/$1/status; }
requests() { grep -c "Request var-binds" "$W/sim.log" 2>/dev/null || true; }
oids() { grep "Request var-binds" "$W/sim.log" 2>/dev/null | awk -F'=<>' '{n += NF - 1} END {print n + 0}'; }
HZ=$(getconf CLK_TCK)

for setup in idle switch direct; do
  config $setup | sed "s/@POLL@/$POLL_MS/" > "$W/$setup.toml"
  "$BIN" run --config "$W/$setup.toml" 2> "$W/$setup.log" &
  PID=$!
  sleep 5
  t0=$(ticks $PID); r0=$(requests); o0=$(oids)
  sleep "$WINDOW"
  t1=$(ticks $PID); r1=$(requests); o1=$(oids); rss=$(rss_kb $PID)
  kill -TERM $PID; wait $PID || true
  cpu=$(echo "scale=2; 100 * ($t1 - $t0) / $HZ / $WINDOW" | bc)
  gets=$(echo "scale=1; ($r1 - $r0) / $WINDOW" | bc)
  ops=$(echo "scale=1; ($o1 - $o0) / $WINDOW" | bc)
  echo "$setup: cpu ${cpu} % of one core, RSS ${rss} kB, ${gets} GETs/s carrying ${ops} OIDs/s"
  eval "rss_$setup=$rss"
done
echo "RSS per device over idle: switch ports $(( (rss_switch - rss_idle) * 1024 / 49 )) B, direct agents $(( (rss_direct - rss_idle) * 1024 / 50 )) B"
