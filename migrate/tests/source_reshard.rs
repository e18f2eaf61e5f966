//! A reshard of the *source* cluster during a run: neither copy method follows keys that a reshard moves
//! between source nodes, so a slot being resharded (migrating/importing) or moved to another shard must never
//! be flipped to Ferrite. The run stops with a clear error and the slot stays on the source; once the reshard
//! is over, `resume` copies the slot again and completes.

mod common;
use common::*;
use ferrite_testkit::Cluster;
use std::time::Duration;

#[test]
fn a_slot_in_migration_in_the_source_is_not_flipped_and_resume_completes_after() {
    let cluster = Cluster::start(3, 0);
    let mut src = source(&cluster);
    let keys = load_all_types(&mut src, 20, "rs");
    // A slot holding keys, put in the middle of a manual reshard: MIGRATING on its owner, IMPORTING on another
    // master (no key moved yet, as between `redis-cli --cluster reshard` steps).
    let key = keys.iter().find(|k| !k.contains('{')).unwrap_or(&keys[0]).clone();
    let slot = ferrite_commands::key_hash_slot(key.as_bytes());
    let from = cluster.master_of_slot(slot);
    let to = *cluster.master_ports().iter().find(|&&p| p != from).unwrap();
    let (from_id, to_id) = (cluster.node_id(from), cluster.node_id(to));
    let slot_s = slot.to_string();
    let at = |p: u16| format!("127.0.0.1:{p}");
    let r = conn(&at(to)).cmd(&args(&["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &from_id])).unwrap();
    assert!(!r.is_error(), "{r:?}");
    let r = conn(&at(from)).cmd(&args(&["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &to_id])).unwrap();
    assert!(!r.is_error(), "{r:?}");

    for method in ["replication", "scan"] {
        // A fresh target and proxy per method (the cutover only happens through a proxy).
        let ferrite = start_ferrite();
        let proxy = start_proxy(&cluster, &ferrite.addr(), &[]);
        let (_d, state) = state_path(&format!("reshard-{method}"));
        let base = sv(&[
            "--from-redis-cluster",
            &cluster.seed(),
            "--to",
            &ferrite.addr(),
            "--proxy",
            &proxy.addr(),
            "--state",
            &state,
            "--json",
        ]);
        let mut a = base.clone();
        a.extend(sv(&["--method", method, "--force"]));
        a.insert(0, "run".into());
        let out = migrate(&a, Duration::from_secs(180));
        assert!(!out.status.success(), "{method}: the run must not complete: {}", show(&out));
        let text = show(&out);
        assert!(text.contains("being resharded") && text.contains(&slot_s), "{method}: {text}");
        let st = ferrite_migrate::state::State::load(std::path::Path::new(&state)).expect("state file");
        assert_ne!(st.get(slot), ferrite_migrate::state::FLIPPED, "{method}: slot {slot} was flipped");

        if method == "scan" {
            // The reshard ends (the slot stays where it was): resume completes and verifies.
            for p in [from, to] {
                let r = conn(&at(p)).cmd(&args(&["CLUSTER", "SETSLOT", &slot_s, "STABLE"])).unwrap();
                assert!(!r.is_error(), "{r:?}");
            }
            let mut a = base.clone();
            a.insert(0, "resume".into());
            let out = migrate(&a, Duration::from_secs(180));
            assert!(out.status.success(), "resume after the reshard: {}", show(&out));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json outcome");
            assert_eq!(v["verified"].as_bool(), Some(true), "{v}");
            assert_eq!(v["slots_flipped"].as_u64(), Some(16384), "{v}");
        }
    }
}
