#!/usr/bin/env python3
"""Writes the Grafana dashboards of this directory (ferrite-store.json, ferrite-proxy.json,
ferrite-migrate.json) from the panel lists below, so the three share one layout and one
datasource convention. Run it after editing a panel: `python3 dashboards/generate.py`.

Every PromQL expression uses only metric names the binaries export; tests/dashboards/check_metrics.py
verifies that against the real binaries.
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
RI = "$__rate_interval"


def sel(extra=""):
    """The label selector every query carries (job and instance variables)."""
    base = 'job=~"$job", instance=~"$instance"'
    return "{" + base + (", " + extra if extra else "") + "}"


class Board:
    def __init__(self, uid, title, description, job_default, job_metric):
        self.uid, self.title, self.description = uid, title, description
        self.job_default, self.job_metric = job_default, job_metric
        self.panels = []
        self.y = 0
        self.x = 0
        self.row_h = 0
        self.next_id = 1

    def row(self, title):
        self._newline()
        self.panels.append({"type": "row", "title": title, "collapsed": False, "id": self._id(),
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def _newline(self):
        if self.x:
            self.y += self.row_h
            self.x = 0
            self.row_h = 0

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def _place(self, w, h):
        if self.x + w > 24:
            self._newline()
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def panel(self, kind, title, desc, targets, unit="short", w=8, h=8, extra=None):
        p = {
            "type": kind,
            "title": title,
            "description": desc,
            "id": self._id(),
            "datasource": DS,
            "gridPos": self._place(w, h),
            "targets": [
                {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i),
                 "range": True, "instant": False}
                for i, (expr, legend) in enumerate(targets)
            ],
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {},
        }
        if kind == "timeseries":
            p["fieldConfig"]["defaults"]["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                                                      "showPoints": "never", "spanNulls": True}
            p["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                            "tooltip": {"mode": "multi", "sort": "desc"}}
        elif kind == "stat":
            p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                            "colorMode": "value", "graphMode": "area", "textMode": "auto", "justifyMode": "auto",
                            "orientation": "auto"}
        if extra:
            for k, v in extra.items():
                if k == "thresholds":
                    p["fieldConfig"]["defaults"]["thresholds"] = {"mode": "absolute", "steps": v}
                    p["fieldConfig"]["defaults"]["color"] = {"mode": "thresholds"}
                elif k == "mappings":
                    p["fieldConfig"]["defaults"]["mappings"] = v
                else:
                    p[k] = v
        self.panels.append(p)

    def ts(self, title, desc, targets, unit="short", w=8, h=8, extra=None):
        self.panel("timeseries", title, desc, targets, unit, w, h, extra)

    def stat(self, title, desc, targets, unit="short", w=4, h=4, extra=None):
        self.panel("stat", title, desc, targets, unit, w, h, extra)

    def json(self):
        return {
            "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "description": "",
                          "type": "datasource", "pluginId": "prometheus", "pluginName": "Prometheus"}],
            "__requires": [
                {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "9.0.0"},
                {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
                {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
                {"type": "panel", "id": "stat", "name": "Stat", "version": ""},
            ],
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["ferrite"],
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": 39,
            "version": 1,
            "refresh": "30s",
            "time": {"from": "now-3h", "to": "now"},
            "timepicker": {},
            "timezone": "",
            "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                      "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                      "name": "Annotations & Alerts", "type": "dashboard"}]},
            "links": [{"type": "dashboards", "tags": ["ferrite"], "asDropdown": True, "title": "Ferrite",
                       "includeVars": True, "keepTime": True}],
            "templating": {"list": [
                {"name": "DS_PROMETHEUS", "label": "Data source", "type": "datasource", "query": "prometheus",
                 "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []},
                {"name": "job", "label": "Job", "type": "query", "datasource": DS,
                 "query": {"query": "label_values(%s, job)" % self.job_metric, "refId": "job"},
                 "definition": "label_values(%s, job)" % self.job_metric,
                 "current": {"selected": True, "text": self.job_default, "value": self.job_default},
                 "includeAll": True, "allValue": ".*", "multi": True, "refresh": 2, "sort": 1, "hide": 0,
                 "regex": "", "options": []},
                {"name": "instance", "label": "Instance", "type": "query", "datasource": DS,
                 "query": {"query": 'label_values(%s{job=~"$job"}, instance)' % self.job_metric,
                           "refId": "instance"},
                 "definition": 'label_values(%s{job=~"$job"}, instance)' % self.job_metric,
                 "current": {"selected": True, "text": "All", "value": "$__all"},
                 "includeAll": True, "allValue": ".*", "multi": True, "refresh": 2, "sort": 1, "hide": 0,
                 "regex": "", "options": []},
            ]},
            "panels": self.panels,
        }


def store():
    b = Board("ferrite-store", "Ferrite store",
              "The ferrite server: traffic, commands, keyspace, memory, clients, persistence "
              "(metrics ferrite_*, read from INFO at scrape time).", "ferrite", "ferrite_uptime_seconds")
    s = sel()
    b.row("Overview")
    b.stat("Uptime", "Seconds since the server started.", [(f"ferrite_uptime_seconds{s}", "{{instance}}")], "s")
    b.stat("Ops/s", "Commands executed per second.",
           [(f"sum(rate(ferrite_commands_processed_total{s}[{RI}]))", "ops/s")], "ops")
    b.stat("Clients", "Client connections open now.", [(f"sum(ferrite_connected_clients{s})", "clients")])
    b.stat("Keys", "Keys in all databases.", [(f"sum(ferrite_db_keys{s})", "keys")])
    b.stat("Memory used / maxmemory", "used_memory as a share of maxmemory (no value when maxmemory is 0).",
           [(f"max(ferrite_memory_used_bytes{s} / (ferrite_memory_max_bytes{s} > 0))", "used")], "percentunit",
           extra={"thresholds": [{"color": "green", "value": None}, {"color": "orange", "value": 0.8},
                                 {"color": "red", "value": 0.9}]})
    b.stat("Last bgsave", "1 = the last background save succeeded (or none ran), 0 = it failed.",
           [(f"min(ferrite_rdb_last_bgsave_ok{s})", "ok")],
           extra={"mappings": [{"type": "value", "options": {"0": {"text": "FAILED", "color": "red"},
                                                             "1": {"text": "ok", "color": "green"}}}],
                  "thresholds": [{"color": "red", "value": None}, {"color": "green", "value": 1}]})

    b.row("Commands")
    b.ts("Commands per second", "All commands executed, per instance.",
         [(f"rate(ferrite_commands_processed_total{s}[{RI}])", "{{instance}}")], "ops")
    b.ts("Calls per command (top 10)", "INFO commandstats calls, per command.",
         [(f"topk(10, sum by (command) (rate(ferrite_command_calls_total{s}[{RI}])))", "{{command}}")], "ops")
    b.ts("Average time per call", "INFO commandstats usec / calls per command (top 10 by time).",
         [(f"topk(10, sum by (command) (rate(ferrite_command_duration_seconds_total{s}[{RI}])) / "
           f"sum by (command) (rate(ferrite_command_calls_total{s}[{RI}])))", "{{command}}")], "s")
    b.ts("Failed and rejected calls", "Per command: failed (error while executing) and rejected (refused "
         "before executing: arity, ACL, OOM ...).",
         [(f"sum by (command) (rate(ferrite_command_failed_calls_total{s}[{RI}])) > 0", "failed {{command}}"),
          (f"sum by (command) (rate(ferrite_command_rejected_calls_total{s}[{RI}])) > 0", "rejected {{command}}")],
         "ops")
    b.ts("Error replies", "Error replies sent, total and per error code (INFO errorstats).",
         [(f"sum(rate(ferrite_error_replies_total{s}[{RI}]))", "all"),
          (f"sum by (error) (rate(ferrite_errors_total{s}[{RI}]))", "{{error}}")], "ops")
    b.ts("Command time share", "CPU time spent in commands per second of wall time (1 = one core busy).",
         [(f"sum(rate(ferrite_command_duration_seconds_total{s}[{RI}]))", "commands"),
          (f"sum(rate(ferrite_cpu_user_seconds_total{s}[{RI}]))", "process user CPU"),
          (f"sum(rate(ferrite_cpu_sys_seconds_total{s}[{RI}]))", "process system CPU")], "percentunit")

    b.row("Keyspace")
    b.ts("Hit ratio", "keyspace_hits / (hits + misses) of read commands.",
         [(f"sum(rate(ferrite_keyspace_hits_total{s}[{RI}])) / (sum(rate(ferrite_keyspace_hits_total{s}[{RI}])) + "
           f"sum(rate(ferrite_keyspace_misses_total{s}[{RI}])))", "hit ratio")], "percentunit")
    b.ts("Expired and evicted keys", "Keys deleted per second because their TTL passed, or evicted because of "
         "maxmemory.",
         [(f"sum(rate(ferrite_expired_keys_total{s}[{RI}]))", "expired"),
          (f"sum(rate(ferrite_evicted_keys_total{s}[{RI}]))", "evicted")], "ops")
    b.ts("Keys per database", "Keys and keys with a TTL per non-empty database.",
         [(f"sum by (db) (ferrite_db_keys{s})", "db{{db}} keys"),
          (f"sum by (db) (ferrite_db_expiring_keys{s})", "db{{db}} expiring")])

    b.row("Memory")
    b.ts("Memory", "used_memory (allocator), RSS, peak and the maxmemory limit.",
         [(f"ferrite_memory_used_bytes{s}", "used {{instance}}"),
          (f"ferrite_memory_rss_bytes{s}", "rss {{instance}}"),
          (f"ferrite_memory_peak_bytes{s}", "peak {{instance}}"),
          (f"ferrite_memory_max_bytes{s} > 0", "maxmemory {{instance}}")], "bytes", w=12)
    b.ts("Fragmentation ratio", "RSS / used_memory.",
         [(f"ferrite_memory_fragmentation_ratio{s}", "{{instance}}")], "short", w=6)
    b.ts("System memory share", "RSS as a share of the machine's memory.",
         [(f"ferrite_memory_rss_bytes{s} / ferrite_memory_system_bytes{s}", "{{instance}}")], "percentunit", w=6)

    b.row("Clients and network")
    b.ts("Clients", "Connected and blocked clients, and the maxclients limit.",
         [(f"ferrite_connected_clients{s}", "connected {{instance}}"),
          (f"ferrite_blocked_clients{s}", "blocked {{instance}}"),
          (f"ferrite_max_clients{s}", "maxclients {{instance}}")])
    b.ts("Connections", "Connections accepted and rejected (maxclients) per second.",
         [(f"sum(rate(ferrite_connections_received_total{s}[{RI}]))", "accepted"),
          (f"sum(rate(ferrite_rejected_connections_total{s}[{RI}]))", "rejected")], "ops")
    b.ts("Network", "Bytes per second read from and written to clients.",
         [(f"sum(rate(ferrite_net_input_bytes_total{s}[{RI}]))", "in"),
          (f"sum(rate(ferrite_net_output_bytes_total{s}[{RI}]))", "out")], "Bps")
    b.ts("Pub/sub", "Channels, patterns and shard channels with subscribers.",
         [(f"sum(ferrite_pubsub_channels{s})", "channels"), (f"sum(ferrite_pubsub_patterns{s})", "patterns"),
          (f"sum(ferrite_pubsub_shard_channels{s})", "shard channels")])

    b.row("Persistence")
    b.ts("Changes since last save", "Writes not yet in an RDB file.",
         [(f"ferrite_rdb_changes_since_last_save{s}", "{{instance}}")])
    b.ts("Time since last save", "Seconds since the last successful save (since start when none).",
         [(f"time() - ferrite_rdb_last_save_timestamp_seconds{s}", "{{instance}}")], "s")
    b.ts("Background work", "1 while a BGSAVE / AOF rewrite runs or a file is loading; last BGSAVE duration.",
         [(f"ferrite_rdb_bgsave_in_progress{s}", "bgsave {{instance}}"),
          (f"ferrite_aof_rewrite_in_progress{s}", "aof rewrite {{instance}}"),
          (f"ferrite_loading{s}", "loading {{instance}}"),
          (f"ferrite_rdb_last_bgsave_duration_seconds{s} >= 0", "last bgsave seconds {{instance}}")])
    b.ts("Persistence status", "1 = ok: last BGSAVE, last AOF rewrite, last AOF write; AOF enabled.",
         [(f"ferrite_rdb_last_bgsave_ok{s}", "bgsave ok {{instance}}"),
          (f"ferrite_aof_last_bgrewrite_ok{s}", "aof rewrite ok {{instance}}"),
          (f"ferrite_aof_last_write_ok{s}", "aof write ok {{instance}}"),
          (f"ferrite_aof_enabled{s}", "aof enabled {{instance}}")], w=12)
    b.ts("Saves and rewrites", "Successful RDB saves and AOF rewrites per hour.",
         [(f"sum(increase(ferrite_rdb_saves_total{s}[1h]))", "rdb saves"),
          (f"sum(increase(ferrite_aof_rewrites_total{s}[1h]))", "aof rewrites")], w=12)
    b.stat("Version", "Ferrite version and the Redis version it is compatible with.",
           [(f"ferrite_build_info{s}", "{{version}} (redis {{redis_version}})")], w=6,
           extra={"options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                              "textMode": "name", "colorMode": "none", "graphMode": "none"}})
    return b


def proxy():
    b = Board("ferrite-proxy", "Ferrite proxy",
              "ferrite-proxy: requests and errors per command and side, backend latency, MOVED/ASK, connections, "
              "slot states, paused requests, mirror (metrics ferrite_proxy_*).", "ferrite-proxy",
              "ferrite_proxy_client_connections")
    s = sel()
    not_backend = sel('origin!="backend"')
    on_ferrite = sel('state="ferrite"')
    b.row("Overview")
    b.stat("Requests/s", "Client requests per second.",
           [(f"sum(rate(ferrite_proxy_requests_total{s}[{RI}]))", "req/s")], "reqps")
    b.stat("Proxy error ratio", "Errors found by the proxy (not the backend's own error replies) per request.",
           [(f"(sum(rate(ferrite_proxy_errors_total{not_backend}[{RI}])) or vector(0)) "
             f"/ sum(rate(ferrite_proxy_requests_total{s}[{RI}]))", "ratio")], "percentunit",
           extra={"thresholds": [{"color": "green", "value": None}, {"color": "red", "value": 0.01}]})
    b.stat("Client connections", "Open client connections.", [(f"sum(ferrite_proxy_client_connections{s})", "")])
    b.stat("Slots on Ferrite", "Slots routed to Ferrite.", [(f'max(ferrite_proxy_slots{on_ferrite})', "")])
    b.stat("Paused requests", "Requests waiting on paused slots now.",
           [(f"sum(ferrite_proxy_paused_requests{s})", "")])
    b.stat("Slot table epoch", "Current slot-table epoch (all proxies should agree).",
           [(f"ferrite_proxy_config_epoch{s}", "{{instance}}")])

    b.row("Requests and errors")
    b.ts("Requests per command (top 10)", "Client requests per second by command.",
         [(f"topk(10, sum by (command) (rate(ferrite_proxy_requests_total{s}[{RI}])))", "{{command}}")], "reqps")
    b.ts("Requests per side", "upstream = Redis Cluster, ferrite = Ferrite, proxy = answered by the proxy itself "
         "(a split or fan-out request counts each part).",
         [(f"sum by (side) (rate(ferrite_proxy_requests_total{s}[{RI}]))", "{{side}}")], "reqps")
    b.ts("Errors per command and origin", "backend = the backend's own error reply; upstream = backend unreachable "
         "or timed out; proxy = answered by the proxy (e.g. TRYAGAIN on a paused slot).",
         [(f"topk(10, sum by (command, origin) (rate(ferrite_proxy_errors_total{s}[{RI}])))",
           "{{command}} {{origin}}")], "reqps")
    b.ts("Errors per side", "Error replies per second by side (upstream, ferrite, proxy, paused) and origin.",
         [(f"sum by (side, origin) (rate(ferrite_proxy_errors_total{s}[{RI}]))", "{{side}} {{origin}}")], "reqps")
    b.ts("MOVED / ASK", "Redirects from the upstream cluster followed per second.",
         [(f"sum by (kind) (rate(ferrite_proxy_redirects_total{s}[{RI}]))", "{{kind}}")], "ops")
    b.ts("Topology refreshes", "Upstream topology refreshes per result.",
         [(f"sum by (result) (rate(ferrite_proxy_topology_refreshes_total{s}[{RI}]))", "{{result}}")], "ops")

    b.row("Backends")
    b.ts("Latency p50 per backend", "Backend round-trip time, median.",
         [(f"histogram_quantile(0.5, sum by (backend, side, le) "
           f"(rate(ferrite_proxy_backend_latency_seconds_bucket{s}[{RI}])))", "{{side}} {{backend}}")], "s", w=12)
    b.ts("Latency p99 per backend", "Backend round-trip time, 99th percentile.",
         [(f"histogram_quantile(0.99, sum by (backend, side, le) "
           f"(rate(ferrite_proxy_backend_latency_seconds_bucket{s}[{RI}])))", "{{side}} {{backend}}")], "s", w=12)
    b.ts("Backend requests/s", "Round trips per second per backend (histogram count).",
         [(f"sum by (backend, side) (rate(ferrite_proxy_backend_latency_seconds_count{s}[{RI}]))",
           "{{side}} {{backend}}")], "reqps")
    b.ts("Backend connections", "Open connections to each backend.",
         [(f"sum by (backend, side) (ferrite_proxy_backend_connections{s})", "{{side}} {{backend}}")])
    b.ts("Backend connect failures", "Failed connection attempts per second per backend.",
         [(f"sum by (backend, side) (rate(ferrite_proxy_backend_connect_failures_total{s}[{RI}]))",
           "{{side}} {{backend}}")], "ops")

    b.row("Clients")
    b.ts("Client connections", "Open client connections per proxy.",
         [(f"ferrite_proxy_client_connections{s}", "{{instance}}")])
    b.ts("Connections accepted", "Client connections accepted per second.",
         [(f"sum(rate(ferrite_proxy_clients_accepted_total{s}[{RI}]))", "accepted")], "ops")

    b.row("Slots, pauses, mirror")
    b.ts("Slots per state", "Slots routed to upstream, to Ferrite, paused; with the mirror flag; tracked (TRACK).",
         [(f"max by (state) (ferrite_proxy_slots{s})", "{{state}}"),
          (f"max(ferrite_proxy_slots_mirrored{s})", "mirrored"),
          (f"max(ferrite_proxy_slots_tracked{s})", "tracked")])
    b.ts("Paused requests", "Requests waiting on paused slots now; answered TRYAGAIN after the pause timeout or "
         "because the pause queue was full.",
         [(f"sum(ferrite_proxy_paused_requests{s})", "waiting"),
          (f"sum(rate(ferrite_proxy_pause_timeouts_total{s}[{RI}]))", "timeouts/s"),
          (f"sum(rate(ferrite_proxy_pause_rejected_total{s}[{RI}]))", "rejected/s")])
    b.ts("Pause wait", "How long requests waited on paused slots (p50, p99).",
         [(f"histogram_quantile(0.5, sum by (le) (rate(ferrite_proxy_pause_wait_seconds_bucket{s}[{RI}])))", "p50"),
          (f"histogram_quantile(0.99, sum by (le) (rate(ferrite_proxy_pause_wait_seconds_bucket{s}[{RI}])))",
           "p99")], "s")
    b.ts("Mirror writes", "Writes mirrored back to the old owner per result.",
         [(f"sum by (result) (rate(ferrite_proxy_mirror_writes_total{s}[{RI}]))", "{{result}}")], "ops")
    b.ts("Mirror lag", "Time from the owner's acknowledgement to the mirror's (p50, p99); writes in flight.",
         [(f"histogram_quantile(0.5, sum by (le) (rate(ferrite_proxy_mirror_lag_seconds_bucket{s}[{RI}])))", "p50"),
          (f"histogram_quantile(0.99, sum by (le) (rate(ferrite_proxy_mirror_lag_seconds_bucket{s}[{RI}])))",
           "p99")], "s")
    b.ts("Mirror in flight and dirty keys", "Mirrored writes not yet acknowledged; keys recorded by TRACK and not "
         "yet read by DIRTY.",
         [(f"sum(ferrite_proxy_mirror_inflight{s})", "mirror in flight"),
          (f"sum(ferrite_proxy_dirty_keys{s})", "dirty keys")])
    return b


def migrate():
    b = Board("ferrite-migrate", "Ferrite migration",
              "ferrite-migrate: slot states, copy rates, replication lag, cutover pauses, verify "
              "(metrics ferrite_migrate_*).", "ferrite-migrate", "ferrite_migrate_keys_copied_total")
    s = sel()
    fl = sel('state="flipped"')
    todo = sel('state=~"pending|copied"')
    b.row("Progress")
    b.stat("Flipped", "Share of the slots in scope now owned by Ferrite.",
           [(f"sum(ferrite_migrate_slots{fl}) / sum(ferrite_migrate_slots{s})", "flipped")], "percentunit")
    b.stat("Slots left", "Slots pending or copied, not yet flipped.",
           [(f"sum(ferrite_migrate_slots{todo})", "")])
    b.stat("ETA", "Slots left divided by the flip rate of the last 15 minutes (no value while nothing flips).",
           [(f"sum(ferrite_migrate_slots{todo}) / (sum(deriv(ferrite_migrate_slots{fl}[15m])) > 0)", "")], "s")
    b.stat("Verify mismatches", "Differences found by the last verify (must be 0).",
           [(f"max(ferrite_migrate_verify_mismatches{s})", "")],
           extra={"thresholds": [{"color": "green", "value": None}, {"color": "red", "value": 1}]})
    b.stat("Copy errors", "Keys or commands Ferrite (or the source's DUMP) refused.",
           [(f"sum(ferrite_migrate_copy_errors_total{s})", "")],
           extra={"thresholds": [{"color": "green", "value": None}, {"color": "red", "value": 1}]})
    b.stat("Pause p99", "99th percentile of the cutover pause per slot group, whole run.",
           [(f"histogram_quantile(0.99, sum by (le) (ferrite_migrate_pause_seconds_bucket{s}))", "")], "s",
           extra={"thresholds": [{"color": "green", "value": None}, {"color": "red", "value": 0.05}]})
    b.ts("Slots per state", "Slots in scope: pending, copied (waiting for cutover), flipped.",
         [(f"sum by (state) (ferrite_migrate_slots{s})", "{{state}}")], w=12)
    b.ts("Flip rate", "Slots flipped per minute.",
         [(f"sum(deriv(ferrite_migrate_slots{fl}[5m])) * 60", "slots/min")], w=12)

    b.row("Copy")
    b.ts("Keys copied", "Keys written to Ferrite per second; dirty keys copied again (scan method).",
         [(f"sum(rate(ferrite_migrate_keys_copied_total{s}[{RI}]))", "copied"),
          (f"sum(rate(ferrite_migrate_keys_recopied_total{s}[{RI}]))", "re-copied")], "ops")
    b.ts("Bytes copied", "Payload bytes written to Ferrite per second.",
         [(f"sum(rate(ferrite_migrate_bytes_copied_total{s}[{RI}]))", "bytes/s")], "Bps")
    b.ts("Copy errors", "Refused keys or commands per second.",
         [(f"sum(rate(ferrite_migrate_copy_errors_total{s}[{RI}]))", "errors/s")], "ops")

    b.row("Replication stream")
    b.ts("Replication lag (bytes)", "Bytes received from each source master and not yet applied to Ferrite.",
         [(f"max by (master) (ferrite_migrate_replication_lag_bytes{s})", "{{master}}")], "bytes")
    b.ts("Replication lag (time)", "Time since the applied offset last caught up with what was received.",
         [(f"max by (master) (ferrite_migrate_replication_lag_milliseconds{s})", "{{master}}")], "ms")
    b.ts("Apply rate", "Replication offset applied per second per master; stream commands per outcome.",
         [(f"max by (master) (rate(ferrite_migrate_replication_applied_offset{s}[{RI}]))", "{{master}} bytes/s"),
          (f"sum by (outcome) (rate(ferrite_migrate_stream_commands_total{s}[{RI}]))", "{{outcome}} cmds/s")])

    b.row("Cutover and verify")
    b.ts("Pause duration", "Cutover pause per slot group (p50, p99) over the last 15 minutes, and the maximum "
         "bucket reached.",
         [(f"histogram_quantile(0.5, sum by (le) (rate(ferrite_migrate_pause_seconds_bucket{s}[15m])))", "p50"),
          (f"histogram_quantile(0.99, sum by (le) (rate(ferrite_migrate_pause_seconds_bucket{s}[15m])))", "p99")],
         "s")
    b.ts("Cutovers", "Slot groups cut over per minute; average pause.",
         [(f"sum(rate(ferrite_migrate_pause_seconds_count{s}[5m])) * 60", "groups/min"),
          (f"sum(rate(ferrite_migrate_pause_seconds_sum{s}[5m])) / sum(rate(ferrite_migrate_pause_seconds_count{s}[5m]))",
           "average pause s")])
    b.ts("Verify and topology", "Differences found by the last verify; source topology re-reads per minute.",
         [(f"max(ferrite_migrate_verify_mismatches{s})", "mismatches"),
          (f"sum(rate(ferrite_migrate_source_topology_refreshes_total{s}[5m])) * 60", "topology refreshes/min")])
    return b


def main():
    for name, fn in [("ferrite-store.json", store), ("ferrite-proxy.json", proxy), ("ferrite-migrate.json", migrate)]:
        with open(os.path.join(HERE, name), "w") as f:
            json.dump(fn().json(), f, indent=2)
            f.write("\n")
        print("wrote", name)


if __name__ == "__main__":
    main()
