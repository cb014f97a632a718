//! The snapshot file format and typed views reject every kind of bad input with a typed
//! error, and never panic.

mod common;

use actix_snapshot::snapshot::{FORMAT_VERSION, HEADER_LEN, MAGIC};
use actix_snapshot::{DecodeError, GlobalSnapshot, NodeId};
use common::*;

/// A real snapshot of a busy token ring, with messages in flight.
async fn busy_snapshot() -> GlobalSnapshot {
    ring_snapshot_in_flight(4, 10).await
}

fn with_crc(mut bytes: Vec<u8>) -> Vec<u8> {
    let end = bytes.len() - 4;
    let crc = crc32fast::hash(&bytes[..end]);
    bytes[end..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

#[actix::test]
async fn round_trip_keeps_everything() {
    let snap = busy_snapshot().await;
    let bytes = snap.to_bytes();
    assert_eq!(&bytes[..8], &MAGIC);
    let back = GlobalSnapshot::from_bytes(&bytes).expect("decodes");
    assert_eq!(back, snap);
    verify(&back, 4, &ring(4));
}

#[actix::test]
async fn every_truncation_is_a_typed_error() {
    let bytes = busy_snapshot().await.to_bytes();
    for len in 0..bytes.len() {
        let err = GlobalSnapshot::from_bytes(&bytes[..len]).expect_err("truncated input accepted");
        match err {
            DecodeError::TooShort { .. } if len < HEADER_LEN => {}
            DecodeError::Truncated { expected, found } if len >= HEADER_LEN => {
                assert_eq!(found, (len - HEADER_LEN) as u64);
                assert_eq!(expected, (bytes.len() - HEADER_LEN) as u64);
            }
            other => panic!("truncated to {len} bytes gave {other:?}"),
        }
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        GlobalSnapshot::from_bytes(&longer),
        Err(DecodeError::TrailingBytes(1))
    );
}

#[actix::test]
async fn every_single_bit_flip_is_detected() {
    let bytes = busy_snapshot().await.to_bytes();
    let mut kinds = std::collections::BTreeMap::new();
    for i in 0..bytes.len() {
        for bit in [0u8, 3, 7] {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            let err = GlobalSnapshot::from_bytes(&b).expect_err("bit flip accepted");
            let kind = match err {
                DecodeError::BadMagic { .. } => "magic",
                DecodeError::UnsupportedVersion { .. } => "version",
                DecodeError::Truncated { .. } | DecodeError::TrailingBytes(_) => "length",
                DecodeError::Checksum { .. } => "checksum",
                other => panic!("flip of bit {bit} at byte {i} gave {other:?}"),
            };
            *kinds.entry(kind).or_insert(0) += 1;
        }
    }
    // Flips in the header are named by field, flips in the body or CRC by the checksum.
    assert!(kinds["checksum"] > bytes.len());
    assert!(kinds.contains_key("magic") && kinds.contains_key("version"));
}

#[actix::test]
async fn wrong_magic_and_future_version() {
    let bytes = busy_snapshot().await.to_bytes();
    let mut b = bytes.clone();
    b[..8].copy_from_slice(b"PNG\r\n\x1a\n\0");
    assert!(matches!(
        GlobalSnapshot::from_bytes(&b),
        Err(DecodeError::BadMagic { .. })
    ));
    assert!(matches!(
        GlobalSnapshot::from_bytes(b"{\"json\": true}"),
        Err(DecodeError::BadMagic { .. })
    ));

    // A later version, and the first edition's version 1 (channels, u32 ids), are refused
    // by version even with a correct checksum.
    assert_eq!(FORMAT_VERSION, 2);
    assert_eq!(&bytes[8..10], &2u16.to_le_bytes());
    for version in [FORMAT_VERSION + 1, 1, 0, u16::MAX] {
        let mut b = bytes.clone();
        b[8..10].copy_from_slice(&version.to_le_bytes());
        let b = with_crc(b);
        assert_eq!(
            GlobalSnapshot::from_bytes(&b),
            Err(DecodeError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION
            })
        );
    }
}

#[test]
fn garbage_body_with_valid_checksum_is_a_body_error() {
    let mut b = Vec::new();
    b.extend_from_slice(&MAGIC);
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    let body = [0xc1u8, 0xff, 0x00, 0x13]; // 0xc1 is never valid msgpack
    b.extend_from_slice(&(body.len() as u64).to_le_bytes());
    b.extend_from_slice(&body);
    b.extend_from_slice(&[0; 4]);
    let b = with_crc(b);
    assert!(matches!(
        GlobalSnapshot::from_bytes(&b),
        Err(DecodeError::Body(_))
    ));
}

#[test]
fn huge_announced_length_does_not_allocate_or_panic() {
    let mut b = GlobalSnapshot::default().to_bytes();
    b[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        GlobalSnapshot::from_bytes(&b),
        Err(DecodeError::Truncated { .. })
    ));
}

/// Encodes `snap` (a well-formed file with a valid checksum) and decodes it again: only the
/// body's own checks can refuse it.
fn reencode(snap: &GlobalSnapshot) -> Result<GlobalSnapshot, DecodeError> {
    GlobalSnapshot::from_bytes(&snap.to_bytes())
}

fn body_error(snap: &GlobalSnapshot, mentions: &str) {
    match reencode(snap) {
        Err(DecodeError::Body(msg)) => assert!(msg.contains(mentions), "{msg}"),
        other => panic!("expected a body error about {mentions:?}, got {other:?}"),
    }
}

#[actix::test]
async fn node_ids_must_be_strictly_increasing_and_below_next_node_id() {
    let snap = busy_snapshot().await;
    assert_eq!(ids(&snap), [NodeId(0), NodeId(1), NodeId(2), NodeId(3)]);
    assert_eq!(snap.next_node_id, 4);
    assert_eq!(reencode(&snap).as_ref(), Ok(&snap));

    // Out of order.
    let mut bad = snap.clone();
    bad.nodes.swap(1, 2);
    body_error(&bad, "not sorted");
    // The same id twice.
    let mut bad = snap.clone();
    bad.nodes[2].id = NodeId(1);
    body_error(&bad, "not sorted");
    // An id the group had not given out yet.
    let mut bad = snap.clone();
    bad.next_node_id = 3;
    body_error(&bad, "next_node_id");
    let mut bad = snap.clone();
    bad.nodes[3].id = NodeId(u64::MAX);
    bad.next_node_id = u64::MAX;
    body_error(&bad, "next_node_id");

    // Sparse ids in increasing order are fine (nodes that left), and a next_node_id above
    // every id.
    let mut sparse = snap.clone();
    sparse.nodes.remove(1);
    sparse.nodes[2].id = NodeId(9);
    sparse
        .paths
        .retain(|p| p.to != NodeId(1) && p.to != NodeId(3));
    sparse
        .ingress
        .retain(|i| i.to != NodeId(1) && i.to != NodeId(3));
    sparse.next_node_id = 10;
    assert_eq!(reencode(&sparse), Ok(sparse.clone()));
    assert_eq!(ids(&sparse), [NodeId(0), NodeId(2), NodeId(9)]);
    assert_eq!(sparse.node_name(NodeId(9)), Some("n3"));
    assert_eq!(sparse.node_by_id(NodeId(1)), None);
}

#[actix::test]
async fn paths_and_ingress_must_feed_nodes_of_the_snapshot() {
    let snap = busy_snapshot().await;
    let with_messages = snap
        .paths
        .iter()
        .position(|p| !p.messages.is_empty())
        .expect("a path with messages");

    // A path to a node that is not in the snapshot.
    let mut bad = snap.clone();
    bad.paths[with_messages].to = NodeId(7);
    body_error(&bad, "unknown node 7");
    // The receiver left, its incoming path stayed: refused.
    let to = snap.paths[with_messages].to;
    let mut bad = snap.clone();
    bad.nodes.retain(|n| n.id != to);
    bad.ingress.retain(|i| i.to != to);
    body_error(&bad, "unknown node");
    // An ingress into a node that is not in the snapshot.
    let mut bad = snap.clone();
    bad.ingress[0].to = NodeId(4);
    body_error(&bad, &format!("{:?}", bad.ingress[0].name));

    // The sender may have left: its messages were still travelling at the cut.
    let from = snap.paths[with_messages].from;
    let mut left = snap.clone();
    left.nodes.retain(|n| n.id != from);
    left.paths.retain(|p| p.to != from);
    left.ingress.retain(|i| i.to != from);
    assert!(left.paths.iter().any(|p| p.from == from));
    let back = reencode(&left).expect("a departed sender is allowed");
    assert_eq!(back, left);
    assert!(back.node_by_id(from).is_none());
    assert!(back.in_flight::<Tok>().unwrap().len() > 0);

    // ... but not a sender the group never had.
    let mut bad = snap.clone();
    bad.paths[with_messages].from = NodeId(snap.next_node_id);
    body_error(&bad, "never gave out");
}

#[actix::test]
async fn typed_views_report_wrong_types_and_names() {
    let snap = busy_snapshot().await;
    // A node's state asked as another actor type.
    #[derive(actix_snapshot::Snapshot)]
    #[snapshot(state = n)]
    struct Other {
        n: u64,
    }
    impl actix::Actor for Other {
        type Context = actix::Context<Self>;
    }
    assert!(matches!(
        snap.state::<Other>("n0"),
        Err(DecodeError::TypeMismatch { .. })
    ));
    assert_eq!(snap.states::<Other>().unwrap().len(), 0);
    assert!(matches!(
        snap.state::<TokNode>("nope"),
        Err(DecodeError::NotFound { kind: "node", .. })
    ));
    // Paths are per message type: the same pair asked for another type is an empty path,
    // as is a pair with nothing in flight; unknown names are errors.
    let busy = snap
        .paths
        .iter()
        .find(|p| !p.messages.is_empty())
        .expect("a path with messages");
    let (from, to) = (
        snap.node_name(busy.from).unwrap(),
        snap.node_name(busy.to).unwrap(),
    );
    assert_eq!(busy.message_type, "Tok");
    assert_eq!(
        snap.path_messages::<Tok>(from, to).unwrap().len(),
        busy.messages.len()
    );
    assert_eq!(
        snap.path_messages::<String>(from, to).unwrap(),
        Vec::<String>::new()
    );
    // n0 -> n2 is no link of the ring: nothing is ever in flight there.
    assert!(snap.path_messages::<Tok>("n0", "n2").unwrap().is_empty());
    assert!(matches!(
        snap.path_messages::<Tok>("n0", "nope"),
        Err(DecodeError::NotFound { kind: "node", .. })
    ));
    assert_eq!(
        snap.path_messages_by_id::<Tok>(busy.from, busy.to).unwrap(),
        snap.path_messages::<Tok>(from, to).unwrap()
    );
    // A recorded message that does not decode as its recorded type.
    let mut bad = snap.clone();
    let k = bad
        .paths
        .iter()
        .position(|p| !p.messages.is_empty())
        .unwrap();
    bad.paths[k].messages[0] = serde_bytes::ByteBuf::from(vec![0xc1]);
    assert!(matches!(
        bad.path_messages::<Tok>(from, to),
        Err(DecodeError::Value { .. })
    ));
    assert!(bad.in_flight::<Tok>().is_err());
    assert_eq!(snap.in_flight::<String>().unwrap().len(), 0);
    assert!(snap.in_flight::<Tok>().unwrap().len() > 0);
    // Recorded bytes that do not decode as the recorded type's State.
    let mut bad = snap.clone();
    bad.nodes[0].state = serde_bytes::ByteBuf::from(vec![0xc1]);
    assert!(matches!(
        bad.state::<TokNode>("n0"),
        Err(DecodeError::Value { .. })
    ));
    assert!(bad.states::<TokNode>().is_err());
}

/// An actor whose type tag is declared, not derived from its name.
#[derive(actix_snapshot::Snapshot)]
#[snapshot(state = n, tag = "bank.Renamed.v2")]
struct Renamed {
    n: u8,
}
impl actix::Actor for Renamed {
    type Context = actix::Context<Self>;
}

mod elsewhere {
    /// Another type called `TokNode`, in another module.
    #[derive(actix_snapshot::Snapshot)]
    #[snapshot(state = n)]
    pub struct TokNode {
        n: u64,
    }
    impl actix::Actor for TokNode {
        type Context = actix::Context<Self>;
    }
}

#[actix::test]
async fn type_tags_are_short_names_unless_declared() {
    use actix_snapshot::{SnapshotGroup, Snapshottable};
    let snap = busy_snapshot().await;
    // Files name types by their own names, without module paths.
    assert_eq!(<TokNode as Snapshottable>::type_tag(), "TokNode");
    assert!(snap.nodes.iter().all(|n| n.actor_type == "TokNode"));
    assert!(snap.paths.iter().all(|p| p.message_type == "Tok"));
    let mut ingress: Vec<&str> = snap
        .ingress
        .iter()
        .map(|i| i.message_type.as_str())
        .collect();
    ingress.sort();
    ingress.dedup();
    assert_eq!(ingress, ["Halt", "Inject", "Stall"]);
    // The short tag is all a view checks: a same-named type from another module passes the
    // tag check and fails only when its state does not decode (a limit of short tags; a
    // type that needs to be told apart declares its own tag).
    assert_eq!(<elsewhere::TokNode as Snapshottable>::type_tag(), "TokNode");
    assert!(matches!(
        snap.state::<elsewhere::TokNode>("n0"),
        Err(DecodeError::Value { .. })
    ));

    // A declared tag is what the file records, and what views check.
    let mut b = SnapshotGroup::builder();
    let r = b.node::<Renamed>("r");
    b.actor(r, |_| Renamed { n: 7 });
    let group = b.start().unwrap();
    let snap = group.snapshot().await.unwrap();
    group.shutdown();
    assert_eq!(snap.node("r").unwrap().actor_type, "bank.Renamed.v2");
    let back = GlobalSnapshot::from_bytes(&snap.to_bytes()).unwrap();
    assert_eq!(back.state::<Renamed>("r").unwrap(), 7);
    assert!(matches!(
        back.state::<TokNode>("r"),
        Err(DecodeError::TypeMismatch { ref found, .. }) if found == "bank.Renamed.v2"
    ));
}
