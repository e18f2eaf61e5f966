//! The testkit's own check: a real 3-master, 1-replica cluster comes up consistent, a slot moves with its keys,
//! and a manual failover promotes a replica.

use ferrite_testkit::{Cluster, Conn, Reply};
use std::time::Duration;

#[test]
fn cluster_lifecycle() {
    let c = Cluster::start(3, 1);
    assert_eq!(c.nodes.len(), 6);
    assert_eq!(c.master_ports().len(), 3);
    assert_eq!(c.replica_ports().len(), 3);
    // A key through its master.
    let slot = 12182u16; // CLUSTER KEYSLOT foo
    let owner = c.master_of_slot(slot);
    let mut k = Conn::connect(owner).unwrap();
    assert_eq!(k.cmd(&["SET", "foo", "bar"]), b"+OK\r\n");
    // Move the slot to another master.
    let target = c.master_ports().into_iter().find(|&p| p != owner).unwrap();
    c.move_slot(slot, target, None);
    assert_eq!(c.master_of_slot(slot), target);
    assert_eq!(Conn::connect(target).unwrap().cmd(&["GET", "foo"]), b"$3\r\nbar\r\n");
    assert!(k.cmd(&["GET", "foo"]).starts_with(b"-MOVED 12182 "));
    // Fail over the new owner to its replica.
    let topo = c.topology();
    let tid = topo.iter().find(|n| n.port == target).unwrap().id.clone();
    let replica = topo.iter().find(|n| n.master_id.as_deref() == Some(tid.as_str())).unwrap().port;
    c.failover(replica);
    assert_eq!(c.master_of_slot(slot), replica);
    let mut r = Conn::connect(replica).unwrap();
    assert_eq!(r.cmd(&["GET", "foo"]), b"$3\r\nbar\r\n");
    assert_eq!(Reply::parse(&r.cmd(&["DBSIZE"])).as_int(), Some(1));
    let _ = Duration::from_secs(0);
}
