//! `spec/vectors/content.json`: the message content encodings of spec/client-store.md
//! section 6 (text, application bytes, a sent copy, sync contents of every item kind, a
//! history part and its placeholder) and contents a receiver rejects. The
//! model writes the bytes field by field from the spec's tables; the SDK's encoder must
//! produce them and its decoder must read them back (and reject the rejected ones).
//!
//! Regenerate after a spec change with
//! `SEALPOST_WRITE_VECTORS=1 cargo test -p sealpost-client --lib content_vectors`.

use crate::content::{
    Content, MAX_SYNC_DELETE_IDS, MAX_SYNC_ITEMS, MessageBody, MessageId, SyncItem, decode_any,
    decode_content, encode_content, encode_history_part, encode_sent_copy, encode_sync,
};
use sealpost_wire::AccountId;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The first 16 bytes of SHA-256("sealpost-vector-" || label).
fn id(label: &str) -> MessageId {
    let digest = Sha256::digest(format!("sealpost-vector-{label}").as_bytes());
    let mut out = [0; 16];
    out.copy_from_slice(&digest[..16]);
    MessageId::from_bytes(out)
}

/// `version || kind || message_id || body`, as the table of section 6 writes it.
fn model(kind: u8, id: &MessageId, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0x01, kind];
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(body);
    out
}

/// `AccountId` encoding (wire.md): one length byte, then the ASCII.
fn account_bytes(a: &str) -> Vec<u8> {
    let mut out = vec![u8::try_from(a.len()).unwrap()];
    out.extend_from_slice(a.as_bytes());
    out
}

fn check_or_write(computed: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/vectors/content.json");
    if std::env::var("SEALPOST_WRITE_VECTORS").is_ok_and(|v| v == "1") {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(computed).unwrap() + "\n",
        )
        .unwrap();
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} cannot be read ({e}); generate it with `SEALPOST_WRITE_VECTORS=1 cargo test \
             -p sealpost-client --lib content_vectors`",
            path.display()
        )
    });
    let committed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        &committed, computed,
        "content.json differs from the computed values"
    );
}

#[test]
fn content_vectors() {
    // Text and application bytes.
    let text_id = id("content.text");
    let text = "Your order #1234 ships today.";
    let text_content = model(0x01, &text_id, text.as_bytes());
    let bytes_id = id("content.bytes");
    let app = [0x7b, 0x22, 0x6f, 0x22, 0x3a, 0x31, 0x7d, 0x00, 0xff];
    let bytes_content = model(0x02, &bytes_id, &app);
    for (content, mid, body) in [
        (&text_content, text_id, MessageBody::Text(text.into())),
        (&bytes_content, bytes_id, MessageBody::Bytes(app.to_vec())),
    ] {
        assert_eq!(&encode_content(&mid, &body)[..], &content[..]);
        assert_eq!(decode_content(content).unwrap(), (mid, body));
    }

    // A sent copy (section 6.1) of the text message.
    let copy_id = id("content.sent-copy");
    let recipient = "+15551230001";
    let (queued_at, delivered_at) = (1_765_000_200_000_u64, 1_765_000_200_123_u64);
    let mut copy_body = account_bytes(recipient);
    copy_body.extend_from_slice(&queued_at.to_be_bytes());
    copy_body.extend_from_slice(&delivered_at.to_be_bytes());
    copy_body.extend_from_slice(&text_content);
    let copy_content = model(0x03, &copy_id, &copy_body);
    let account = AccountId::new(recipient).unwrap();
    let encoded = encode_sent_copy(&copy_id, &account, queued_at, delivered_at, &text_content);
    assert_eq!(encoded.as_deref().map(|v| &v[..]), Some(&copy_content[..]));
    let (got_id, Content::SentCopy(copy)) = decode_any(&copy_content).unwrap() else {
        panic!("the sent copy does not decode as one");
    };
    assert_eq!(got_id, copy_id);
    assert_eq!(copy.recipient, account);
    assert_eq!(
        (copy.queued_at, copy.delivered_at),
        (queued_at, delivered_at)
    );
    assert_eq!(
        (copy.message_id, copy.body),
        (text_id, MessageBody::Text(text.into()))
    );
    assert_eq!(&copy.inner[..], &text_content[..]);

    // Sync contents (section 6.3): one of each item kind, and one with all three.
    let peer = "+15551230002";
    let peer_id = AccountId::new(peer).unwrap();
    let (gone_a, gone_b) = (id("content.sync.deleted-a"), id("content.sync.deleted-b"));
    let read_item = {
        let mut b = vec![0x01];
        b.extend(account_bytes(peer));
        b.extend_from_slice(text_id.as_bytes());
        b
    };
    let delete_item = {
        let mut b = vec![0x02];
        b.extend(account_bytes(peer));
        b.extend_from_slice(&2u16.to_be_bytes());
        b.extend_from_slice(gone_a.as_bytes());
        b.extend_from_slice(gone_b.as_bytes());
        b
    };
    let clear_item = {
        let mut b = vec![0x03];
        b.extend(account_bytes(peer));
        b
    };
    let sync_body = |items: &[&[u8]]| {
        let mut b = vec![u8::try_from(items.len()).unwrap()];
        for i in items {
            b.extend_from_slice(i);
        }
        b
    };
    let read = SyncItem::ReadUpTo {
        peer: peer_id.clone(),
        up_to: text_id,
    };
    let delete = SyncItem::DeleteMessages {
        peer: peer_id.clone(),
        ids: vec![gone_a, gone_b],
    };
    let clear = SyncItem::DeleteConversation {
        peer: peer_id.clone(),
    };
    let sync_ids = [
        id("content.sync.read"),
        id("content.sync.delete"),
        id("content.sync.delete-conversation"),
        id("content.sync.all"),
    ];
    let syncs: Vec<(Vec<SyncItem>, Vec<u8>)> = vec![
        (
            vec![read.clone()],
            model(0x04, &sync_ids[0], &sync_body(&[&read_item])),
        ),
        (
            vec![delete.clone()],
            model(0x04, &sync_ids[1], &sync_body(&[&delete_item])),
        ),
        (
            vec![clear.clone()],
            model(0x04, &sync_ids[2], &sync_body(&[&clear_item])),
        ),
        (
            vec![delete, read, clear],
            model(
                0x04,
                &sync_ids[3],
                &sync_body(&[&delete_item, &read_item, &clear_item]),
            ),
        ),
    ];
    for ((items, content), sid) in syncs.iter().zip(sync_ids) {
        assert_eq!(&encode_sync(&sid, items).unwrap()[..], &content[..]);
        assert_eq!(
            decode_any(content).unwrap(),
            (sid, Content::Sync(items.clone()))
        );
        assert!(decode_content(content).is_err());
    }
    let read_content = &syncs[0].1;

    // A history part (section 6.2): the last, empty part of vectors/history_bundle.json,
    // and the placeholder (the same kind with an empty body).
    let part_id = id("content.history-part");
    let history: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/vectors/history_bundle.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let part = hex::decode(history["part_1_empty_last"].as_str().unwrap()).unwrap();
    let part_content = model(0x10, &part_id, &part);
    assert_eq!(&encode_history_part(&part_id, &part)[..], &part_content[..]);
    let (got_id, Content::HistoryPart(decoded)) = decode_any(&part_content).unwrap() else {
        panic!("the history part does not decode as one");
    };
    assert_eq!((got_id, decoded.encode().unwrap()), (part_id, part.clone()));
    let placeholder = model(0x10, &part_id, &[]);
    assert_eq!(&encode_history_part(&part_id, &[])[..], &placeholder[..]);
    assert!(matches!(
        decode_any(&placeholder).unwrap(),
        (i, Content::HistoryPlaceholder) if i == part_id
    ));
    assert!(decode_content(&part_content).is_err());

    // Contents a receiver rejects, each with the rule of section 6 or 6.1 it breaks.
    let mut copy_of_copy_body = account_bytes(recipient);
    copy_of_copy_body.extend_from_slice(&queued_at.to_be_bytes());
    copy_of_copy_body.extend_from_slice(&delivered_at.to_be_bytes());
    copy_of_copy_body.extend_from_slice(&copy_content);
    let mut other_version = text_content.clone();
    other_version[0] = 0x02;
    let rejected: Vec<(&str, Vec<u8>)> = vec![
        ("version 0x02", other_version),
        ("unknown kind 0x7f", model(0x7f, &text_id, b"x")),
        (
            "text that is not UTF-8",
            model(0x01, &text_id, &[0x61, 0xff]),
        ),
        (
            "shorter than version, kind and message id",
            text_content[..17].to_vec(),
        ),
        (
            "sent copy whose recipient is cut short",
            copy_content[..18 + 5].to_vec(),
        ),
        (
            "sent copy without its times",
            model(0x03, &copy_id, &account_bytes(recipient)),
        ),
        (
            "sent copy of a sent copy",
            model(0x03, &copy_id, &copy_of_copy_body),
        ),
        (
            "history part that does not decode (cut short)",
            model(0x10, &part_id, &part[..part.len() - 1]),
        ),
        (
            "sync with no items",
            model(0x04, &sync_ids[0], &sync_body(&[])),
        ),
        // The count alone is refused: a decoder checks it before reading any item.
        ("sync whose count is MAX_SYNC_ITEMS + 1 (33)", {
            let mut over = read_content.clone();
            over[18] = u8::try_from(MAX_SYNC_ITEMS + 1).unwrap();
            over
        }),
        ("sync item with unknown tag 0x7f", {
            let mut unknown = read_item.clone();
            unknown[0] = 0x7f;
            model(0x04, &sync_ids[0], &sync_body(&[&unknown]))
        }),
        (
            "sync cut short inside its message id",
            read_content[..read_content.len() - 1].to_vec(),
        ),
        ("sync with fewer items than its count", {
            let mut short = read_content.clone();
            short[18] = 2;
            short
        }),
        ("sync with a trailing byte", {
            let mut trailing = read_content.clone();
            trailing.push(0x00);
            trailing
        }),
        ("sync deletion with no ids", {
            let mut b = vec![0x02];
            b.extend(account_bytes(peer));
            b.extend_from_slice(&0u16.to_be_bytes());
            model(0x04, &sync_ids[1], &sync_body(&[&b]))
        }),
        // Likewise the id count: refused before the ids are read.
        (
            "sync deletion whose id count is MAX_SYNC_DELETE_IDS + 1 (257)",
            {
                let mut b = vec![0x02];
                b.extend(account_bytes(peer));
                let n = u16::try_from(MAX_SYNC_DELETE_IDS + 1).unwrap();
                b.extend_from_slice(&n.to_be_bytes());
                b.extend_from_slice(gone_a.as_bytes());
                model(0x04, &sync_ids[1], &sync_body(&[&b]))
            },
        ),
    ];
    for (why, content) in &rejected {
        assert!(decode_any(content).is_err(), "accepted: {why}");
        assert!(decode_content(content).is_err(), "accepted: {why}");
    }
    // A sent copy is not a message: the decoder of messages refuses it.
    assert!(decode_content(&copy_content).is_err());

    let computed = json!({
        "description": "Message contents (spec/client-store.md section 6): text, application \
            bytes, a sent copy (section 6.1) of the text, sync contents (section 6.3) of each \
            item kind and of all three, a history part and its placeholder (section 6.2), and \
            contents a receiver rejects \
            (it drops and acknowledges them). Message ids are the first 16 bytes of \
            SHA-256(\"sealpost-vector-\" || label).",
        "text": {
            "message_id": hex::encode(text_id.as_bytes()),
            "text": text,
            "content": hex::encode(&text_content),
        },
        "bytes": {
            "message_id": hex::encode(bytes_id.as_bytes()),
            "body": hex::encode(app),
            "content": hex::encode(&bytes_content),
        },
        "sent_copy": {
            "copy_id": hex::encode(copy_id.as_bytes()),
            "recipient": recipient,
            "queued_at": queued_at,
            "delivered_at": delivered_at,
            "inner": "the text content above",
            "content": hex::encode(&copy_content),
        },
        "sync": syncs
            .iter()
            .zip(sync_ids)
            .zip(["read_up_to", "delete_messages", "delete_conversation", "all_three"])
            .map(|(((_, content), sid), name)| json!({
                "name": name,
                "message_id": hex::encode(sid.as_bytes()),
                "content": hex::encode(content),
            }))
            .collect::<Vec<_>>(),
        "sync_values": {
            "peer": peer,
            "read_up_to": "the text message's id",
            "deleted": [hex::encode(gone_a.as_bytes()), hex::encode(gone_b.as_bytes())],
            "all_three": "delete_messages, read_up_to, delete_conversation, in this order",
        },
        "history_part": {
            "message_id": hex::encode(part_id.as_bytes()),
            "part": "part_1_empty_last of history_bundle.json",
            "content": hex::encode(&part_content),
        },
        "placeholder": {
            "message_id": hex::encode(part_id.as_bytes()),
            "content": hex::encode(&placeholder),
        },
        "rejected": rejected
            .iter()
            .map(|(why, c)| json!({ "why": why, "content": hex::encode(c) }))
            .collect::<Vec<_>>(),
    });
    check_or_write(&computed);
}
