//! The snapshot file format and typed views reject every kind of bad input with a typed
//! error, and never panic.

mod common;

use actix_snapshot::snapshot::{FORMAT_VERSION, HEADER_LEN, MAGIC};
use actix_snapshot::{DecodeError, GlobalSnapshot};
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

    let mut b = bytes.clone();
    b[8..10].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let b = with_crc(b);
    assert_eq!(
        GlobalSnapshot::from_bytes(&b),
        Err(DecodeError::UnsupportedVersion {
            found: FORMAT_VERSION + 1,
            supported: FORMAT_VERSION
        })
    );
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

#[actix::test]
async fn inconsistent_counters_in_a_well_formed_body_are_rejected() {
    let mut snap = busy_snapshot().await;
    let ch = snap
        .channels
        .iter_mut()
        .find(|c| !c.messages.is_empty())
        .expect("a channel with messages");
    ch.sent += 1; // claims a message that is not recorded
    let err = GlobalSnapshot::from_bytes(&snap.to_bytes()).expect_err("accepted");
    assert!(matches!(err, DecodeError::Body(_)), "{err:?}");
}

#[actix::test]
async fn typed_views_report_wrong_types_and_names() {
    let snap = busy_snapshot().await;
    // A node's state asked as another actor type.
    struct Other;
    impl actix_snapshot::Snapshottable for Other {
        type State = u64;
        fn snapshot_state(&self) -> u64 {
            0
        }
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
    // A channel's messages asked as another message type.
    assert!(matches!(
        snap.channel_messages::<String>("n0", "n1"),
        Err(DecodeError::TypeMismatch { .. })
    ));
    // No such channel.
    assert!(matches!(
        snap.channel_messages::<Tok>("n0", "n2"),
        Err(DecodeError::NotFound {
            kind: "channel",
            ..
        })
    ));
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
