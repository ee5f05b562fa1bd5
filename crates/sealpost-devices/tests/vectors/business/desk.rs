//! `spec/vectors/business_desk.json`: a conversation route with its basis, the desk
//! contents (assign, handoff, note), transcript chains, a transcript confirmation and the
//! handoff check (`spec/business.md` sections 8 and 9), computed through the API and by a
//! model that writes the bytes exactly as the spec's tables do.

use super::*;
use sealpost_devices::{HandoffCheck, TranscriptLog, chain_step};
use sealpost_wire::business::{
    ChainHead, ConversationState, DeskRef, HandoffEntryRef, RouteMessage, Side,
    TranscriptConfirmation,
};
use sha2::Digest as _;

const SPEC_TRANSCRIPT_LABEL: &[u8] = b"Sealpost_Transcript_v1";

/// A text content as client-store.md section 6 writes it.
fn text_content(id: u8, text: &str) -> Vec<u8> {
    [&[0x01, 0x01][..], &[id; 16], text.as_bytes()].concat()
}

fn model_step(head: &[u8; 32], content: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest([SPEC_TRANSCRIPT_LABEL, head, content].concat()).into()
}

fn var16(b: &[u8]) -> Vec<u8> {
    [&u16::try_from(b.len()).unwrap().to_be_bytes()[..], b].concat()
}

#[test]
fn desk_vectors_and_checks() {
    let ak = AccountKeyPair::from_seed(&secret("business.account-key"));
    let (list, devices) = business_list(&ak);
    let customer = AccountId::new(CUSTOMER).unwrap();
    let default = ak
        .sign_route(route_body(None, 1, vec![3, 4], RouteSigner::AccountKey))
        .unwrap();
    // The bot escalates to the agent: a conversation route signed by the bot, with the
    // default route as its basis (the route under which the bot had the conversation).
    let escalation = sign_route_as_device(
        route_body(Some(CUSTOMER), 1, vec![3], RouteSigner::Device(4)),
        |m| devices[3].signing.sign(m),
    )
    .unwrap();
    let message = RouteMessage {
        route: escalation.clone(),
        basis: Some(default.clone()),
    };
    let route_bytes = message.encode().unwrap();
    assert_eq!(
        route_bytes,
        [
            var16(&escalation.encode().unwrap()),
            var16(&default.encode().unwrap())
        ]
        .concat()
    );
    assert_eq!(RouteMessage::decode(&route_bytes).unwrap(), message);
    let basis = VerifiedRoute::verify(&default, &list, None, None).unwrap();
    VerifiedRoute::verify(&escalation, &list, Some(&customer), Some(&basis)).unwrap();

    // The conversation: two messages of the customer's device 1, one of the bot (4).
    let c1 = text_content(0x11, "Where is order 1042?");
    let c2 = text_content(0x12, "It was due Monday");
    let b1 = text_content(0x21, "Let me find a person for you");
    let entries = vec![
        HandoffEntryRef {
            side: Side::Customer,
            device: 1,
            timestamp: ISSUED_AT + 1,
            content: &c1,
        },
        HandoffEntryRef {
            side: Side::Customer,
            device: 1,
            timestamp: ISSUED_AT + 2,
            content: &c2,
        },
        HandoffEntryRef {
            side: Side::Business,
            device: 4,
            timestamp: ISSUED_AT + 3,
            content: &b1,
        },
    ];
    let assign = DeskRef::Assign {
        customer: customer.clone(),
        state: ConversationState::Open,
        route: Box::new(message.clone()),
    }
    .encode()
    .unwrap();
    assert_eq!(
        assign,
        [&[0x01][..], &text8(CUSTOMER), &[0x01], &route_bytes].concat()
    );
    let note = "asks about a late order";
    // Part 1 of 2 (the note travels in part 1 only).
    let handoff = DeskRef::Handoff {
        customer: customer.clone(),
        route_version: 1,
        part: 1,
        parts: 2,
        note,
        entries: entries.clone(),
    }
    .encode()
    .unwrap();
    let mut model = [
        &[0x02][..],
        &text8(CUSTOMER),
        &1u64.to_be_bytes(),
        &1u16.to_be_bytes(),
        &2u16.to_be_bytes(),
        &var16(note.as_bytes()),
        &3u32.to_be_bytes(),
    ]
    .concat();
    for e in &entries {
        model.push(e.side.to_u8());
        model.extend_from_slice(&e.device.to_be_bytes());
        model.extend_from_slice(&e.timestamp.to_be_bytes());
        model.extend_from_slice(&u32::try_from(e.content.len()).unwrap().to_be_bytes());
        model.extend_from_slice(e.content);
    }
    assert_eq!(handoff, model);
    let internal = DeskRef::Note {
        customer: customer.clone(),
        text: "refund approved",
    }
    .encode()
    .unwrap();
    assert_eq!(
        internal,
        [&[0x03][..], &text8(CUSTOMER), &var16(b"refund approved")].concat()
    );
    for body in [&assign, &handoff, &internal] {
        assert_eq!(DeskRef::decode(body).unwrap().encode().unwrap(), *body);
    }

    // The customer's chains, by the model and by the API.
    let zero = [0u8; 32];
    let customer_head = model_step(&model_step(&zero, &c1), &c2);
    let bot_head = model_step(&zero, &b1);
    assert_eq!(chain_step(&chain_step(&zero, &c1), &c2), customer_head);
    let confirmation = TranscriptConfirmation {
        route_version: 1,
        chains: vec![
            ChainHead {
                side: Side::Customer,
                device: 1,
                length: 2,
                head: customer_head,
            },
            ChainHead {
                side: Side::Business,
                device: 4,
                length: 1,
                head: bot_head,
            },
        ],
    };
    let confirmation_bytes = confirmation.encode().unwrap();
    assert_eq!(
        confirmation_bytes,
        [
            &1u64.to_be_bytes()[..],
            &[2],
            &[0x00],
            &1u32.to_be_bytes(),
            &2u32.to_be_bytes(),
            &customer_head,
            &[0x01],
            &4u32.to_be_bytes(),
            &1u32.to_be_bytes(),
            &bot_head,
        ]
        .concat()
    );
    assert_eq!(
        TranscriptConfirmation::decode(&confirmation_bytes).unwrap(),
        confirmation
    );

    // The check (9.3) of honest and tampered handoffs against the confirmation.
    let check = |contents: &[(Side, u32, &[u8])]| {
        let mut log = TranscriptLog::new();
        for (side, device, content) in contents {
            log.push(*side, *device, content).unwrap();
        }
        log.check(&confirmation, 1)
    };
    let mut altered = c2.clone();
    *altered.last_mut().unwrap() ^= 1;
    let invented = text_content(0x13, "I never said this");
    let honest = [
        (Side::Customer, 1, &c1[..]),
        (Side::Customer, 1, &c2[..]),
        (Side::Business, 4, &b1[..]),
    ];
    let cases = [
        ("honest", honest.to_vec()),
        (
            "altered",
            vec![honest[0], (Side::Customer, 1, &altered[..]), honest[2]],
        ),
        ("reordered", vec![honest[1], honest[0], honest[2]]),
        ("truncated", vec![honest[0], honest[2]]),
        (
            "invented_in_the_middle",
            vec![
                honest[0],
                (Side::Customer, 1, &invented[..]),
                honest[1],
                honest[2],
            ],
        ),
        (
            "invented_at_the_end",
            vec![
                honest[0],
                honest[1],
                (Side::Customer, 1, &invented[..]),
                honest[2],
            ],
        ),
        (
            "business_message_not_yet_seen",
            vec![
                honest[0],
                honest[1],
                honest[2],
                (Side::Business, 3, &invented[..]),
            ],
        ),
    ];
    let expected = [
        HandoffCheck::Verified {
            confirmed: 3,
            unconfirmed: 0,
        },
        HandoffCheck::Mismatch {
            side: Side::Customer,
            device: 1,
        },
        HandoffCheck::Mismatch {
            side: Side::Customer,
            device: 1,
        },
        HandoffCheck::Incomplete {
            missing: 1,
            confirmed: 1,
        },
        HandoffCheck::Mismatch {
            side: Side::Customer,
            device: 1,
        },
        HandoffCheck::Mismatch {
            side: Side::Customer,
            device: 1,
        },
        HandoffCheck::Verified {
            confirmed: 3,
            unconfirmed: 1,
        },
    ];
    let mut checks = serde_json::Map::new();
    for ((name, contents), want) in cases.iter().zip(expected) {
        let got = check(contents);
        assert_eq!(got, want, "{name}");
        let handoff = DeskRef::Handoff {
            customer: customer.clone(),
            route_version: 1,
            part: 1,
            parts: 1,
            note: "",
            entries: contents
                .iter()
                .map(|(side, device, content)| HandoffEntryRef {
                    side: *side,
                    device: *device,
                    timestamp: ISSUED_AT,
                    content,
                })
                .collect(),
        }
        .encode()
        .unwrap();
        checks.insert(
            (*name).to_owned(),
            json!({ "handoff": hex::encode(handoff), "result": format!("{got:?}") }),
        );
    }

    // Encodings a reader refuses.
    let refused = [
        (
            "unknown_action",
            [&[0x09][..], &text8(CUSTOMER)].concat(),
            DecodeError::UnknownType {
                what: "desk action",
                value: 9,
            },
        ),
        (
            "empty_note",
            [&[0x03][..], &text8(CUSTOMER), &var16(b"")].concat(),
            DecodeError::InvalidValue("note"),
        ),
        (
            "handoff_part_zero",
            [
                &[0x02][..],
                &text8(CUSTOMER),
                &1u64.to_be_bytes(),
                &0u16.to_be_bytes(),
                &1u16.to_be_bytes(),
                &var16(b""),
                &0u32.to_be_bytes(),
            ]
            .concat(),
            DecodeError::InvalidValue("handoff part"),
        ),
        (
            "handoff_part_after_last",
            [
                &[0x02][..],
                &text8(CUSTOMER),
                &1u64.to_be_bytes(),
                &3u16.to_be_bytes(),
                &2u16.to_be_bytes(),
                &var16(b""),
                &0u32.to_be_bytes(),
            ]
            .concat(),
            DecodeError::InvalidValue("handoff part"),
        ),
        (
            "handoff_too_many_parts",
            [
                &[0x02][..],
                &text8(CUSTOMER),
                &1u64.to_be_bytes(),
                &1u16.to_be_bytes(),
                &65u16.to_be_bytes(),
                &var16(b""),
                &0u32.to_be_bytes(),
            ]
            .concat(),
            DecodeError::InvalidValue("handoff parts"),
        ),
        (
            "handoff_note_after_part_1",
            [
                &[0x02][..],
                &text8(CUSTOMER),
                &1u64.to_be_bytes(),
                &2u16.to_be_bytes(),
                &2u16.to_be_bytes(),
                &var16(b"late"),
                &0u32.to_be_bytes(),
            ]
            .concat(),
            DecodeError::InvalidValue("note"),
        ),
        (
            "handoff_entry_not_a_message",
            [
                &[0x02][..],
                &text8(CUSTOMER),
                &1u64.to_be_bytes(),
                &1u16.to_be_bytes(),
                &1u16.to_be_bytes(),
                &var16(b""),
                &1u32.to_be_bytes(),
                &[0x00],
                &1u32.to_be_bytes(),
                &ISSUED_AT.to_be_bytes(),
                &27u32.to_be_bytes(),
                // A transcript confirmation (kind 0x07) with no chains: not a message.
                &[0x01, 0x07],
                &[0; 16],
                &1u64.to_be_bytes(),
                &[0],
            ]
            .concat(),
            DecodeError::UnknownType {
                what: "content kind",
                value: 7,
            },
        ),
    ];
    let mut refused_json = serde_json::Map::new();
    for (name, bytes, error) in &refused {
        assert_eq!(DeskRef::decode(bytes), Err(*error), "{name}");
        refused_json.insert(
            (*name).to_owned(),
            json!({ "desk": hex::encode(bytes), "error": format!("{error:?}") }),
        );
    }
    let mut unordered = confirmation.clone();
    unordered.chains.reverse();
    let mut w = sealpost_wire::Writer::new();
    w.u64(1).u8(2);
    for c in &unordered.chains {
        w.u8(c.side.to_u8())
            .u32(c.device)
            .u32(c.length)
            .bytes(&c.head);
    }
    let unordered = w.into_bytes();
    assert_eq!(
        TranscriptConfirmation::decode(&unordered),
        Err(DecodeError::InvalidValue("chain order"))
    );
    refused_json.insert(
        "confirmation_chains_out_of_order".to_owned(),
        json!({ "confirmation": hex::encode(&unordered), "error": "InvalidValue(\"chain order\")" }),
    );

    let computed = json!({
        "account": BUSINESS,
        "customer": CUSTOMER,
        "list": "see business_routes.json",
        "route_message": {
            "encoded": hex::encode(&route_bytes),
            "route": "escalation_by_bot (business_routes.json)",
            "basis": "default_route (business_routes.json)",
        },
        "desk": {
            "assign": hex::encode(&assign),
            "handoff": hex::encode(&handoff),
            "note": hex::encode(&internal),
        },
        "transcript": {
            "label": "Sealpost_Transcript_v1",
            "messages": [hex::encode(&c1), hex::encode(&c2), hex::encode(&b1)],
            "customer_chain_device_1_head": hex::encode(customer_head),
            "business_chain_device_4_head": hex::encode(bot_head),
            "confirmation": hex::encode(&confirmation_bytes),
            "confirming_device": 1,
        },
        "checks": checks,
        "refused": refused_json,
    });
    write_or_check("business_desk.json", &computed);
}
