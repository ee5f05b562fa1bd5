//! Device lists: verification, the update rule and linking, end to end with real keys
//! (spec/devices.md sections 3 to 6).

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::{Device, account, consumer, name};
use sealpost_crypto::ed25519::SigningKey;
use sealpost_devices::{
    AccountKeyPair, DeviceListError, DeviceListPin, DeviceRole, LinkError, LinkRequest, Update,
    UpdateError, VerifiedDeviceList, parse_invitation, seal_provisioning,
};
use sealpost_wire::devices::{DeviceEntry, SignedDeviceList};
use sealpost_wire::{AccountId, DecodeError};

/// Links `device` to the account held by `ak` through the provisioning message, as the two
/// devices do (spec/devices.md 6.1).
fn link(
    ak: &AccountKeyPair,
    current: &VerifiedDeviceList,
    device: &Device,
    role: DeviceRole,
    device_name: &str,
) -> VerifiedDeviceList {
    let mut rng = rand::rng();
    let request = LinkRequest::new(&mut rng, [7; 16], device.identity);
    let invitation = parse_invitation(&request.invitation_text()).unwrap();
    let body = ak
        .link_device(current, invitation.identity, role, name(device_name), 2_000)
        .unwrap();
    let sealed = seal_provisioning(&mut rng, &invitation, &body).unwrap();
    let provisioned = request.open(&sealed).unwrap();
    assert_eq!(provisioned.account(), &account());
    assert_eq!(
        provisioned.key_holder_name(),
        current.key_holder().map(|e| e.name.as_str())
    );
    provisioned.complete(device.signer()).unwrap()
}

/// Re-signs a modified body with `ak` (what a holder of the account key can do, and
/// nobody else).
fn resign(ak: &AccountKeyPair, list: &SignedDeviceList) -> SignedDeviceList {
    let mut l = list.clone();
    let mut message = b"Sealpost_DeviceList_v1".to_vec();
    message.extend_from_slice(&l.body.encode().unwrap());
    l.signature = SigningKey::from_seed(&ak.to_seed())
        .sign(&message)
        .to_bytes();
    l
}

#[test]
fn a_linked_device_is_on_the_next_version_and_contacts_see_the_change() {
    let (ak, _phone, v1) = consumer();
    let desktop = Device::new();
    let v2 = link(&ak, &v1, &desktop, DeviceRole::Linked, "Desktop");
    assert_eq!(v2.list_version(), 2);
    assert_eq!(v2.next_device_id(), 3);
    let entry = v2.device(2).unwrap();
    assert_eq!(entry.identity, desktop.identity);
    assert_eq!(entry.role, DeviceRole::Linked);
    // What the relay stores and serves verifies on its own.
    let served = VerifiedDeviceList::verify(v2.as_bytes(), &account()).unwrap();
    assert_eq!(served, v2);

    let mut pin = DeviceListPin::new(v1.clone());
    let Update::Advanced(change) = pin.accept(&served).unwrap() else {
        panic!("not advanced")
    };
    assert_eq!(change.added.len(), 1);
    assert_eq!(change.added[0].name.as_str(), "Desktop");
    assert!(change.removed.is_empty() && change.changed.is_empty());
    assert_eq!(pin.accept(&served).unwrap(), Update::Unchanged);

    // Unlinking: version 3 without the desktop; a rollback to version 2 is refused.
    let v3 = ak.remove_device(&v2, 2, 3_000).unwrap();
    let Update::Advanced(change) = pin.accept(&v3).unwrap() else {
        panic!("not advanced")
    };
    assert_eq!(change.removed[0].device_id, 2);
    assert_eq!(
        pin.accept(&v2),
        Err(UpdateError::RolledBack {
            pinned: 3,
            offered: 2
        })
    );
    assert_eq!(pin.current(), &v3);
    // The key holder cannot remove itself; an unknown id is not listed.
    assert_eq!(ak.remove_device(&v3, 1, 4_000), Err(LinkError::Roles));
    assert_eq!(ak.remove_device(&v3, 2, 4_000), Err(LinkError::NotListed));
}

#[test]
fn a_device_added_without_the_account_key_is_refused() {
    // The ghost device: the relay (or anyone without the account key) adds an entry.
    let (ak, _phone, v1) = consumer();
    let ghost = Device::new();
    let mut forged = v1.signed().clone();
    forged.body.list_version = 2;
    forged.body.next_device_id = 3;
    forged.body.entries.push(DeviceEntry {
        device_id: 2,
        identity: ghost.identity,
        role: DeviceRole::Linked,
        added_at: 0,
        name: name("Phone 2"),
    });
    forged.bindings.push(
        ghost
            .signing
            .sign(&sealpost_devices::binding_message(
                &account(),
                &ak.public(),
                &ghost.identity,
            ))
            .to_bytes(),
    );
    assert_eq!(
        VerifiedDeviceList::verify(&forged.encode().unwrap(), &account()),
        Err(DeviceListError::BadSignature)
    );
    // Signed by another account key: valid on its own, refused by every pinned contact.
    let relay_key = AccountKeyPair::generate(&mut rand::rng());
    let mut other = forged.clone();
    other.body.account_key = relay_key.public().to_bytes();
    other.bindings = other
        .body
        .entries
        .iter()
        .map(|_| [0; 64])
        .collect::<Vec<_>>();
    other.bindings[1] = ghost
        .signing
        .sign(&sealpost_devices::binding_message(
            &account(),
            &relay_key.public(),
            &ghost.identity,
        ))
        .to_bytes();
    let other = resign(&relay_key, &other);
    // The phone never bound itself to the relay's key.
    assert_eq!(
        VerifiedDeviceList::verify(&other.encode().unwrap(), &account()),
        Err(DeviceListError::BadBinding { device_id: 1 })
    );
    // A list of the relay's own devices under its own key verifies, but a contact that
    // pinned the real account key refuses it.
    let own = relay_key
        .first_list(
            &account(),
            1,
            ghost.identity,
            DeviceRole::Primary,
            name("Phone"),
            0,
            ghost.signer(),
        )
        .unwrap();
    let pin = DeviceListPin::new(v1);
    assert_eq!(pin.check(&own), Err(UpdateError::AccountKeyChanged));
}

#[test]
fn the_update_rule_refuses_equivocation_reused_ids_and_changed_identities() {
    let (ak, _phone, v1) = consumer();
    let desktop = Device::new();
    let v2 = link(&ak, &v1, &desktop, DeviceRole::Linked, "Desktop");
    let pin = DeviceListPin::new(v2.clone());

    // Same version, other content (a renamed device, validly signed).
    let mut renamed = v2.signed().clone();
    renamed.body.entries[1].name = name("Laptop");
    let renamed = resign(&ak, &renamed);
    let renamed = VerifiedDeviceList::verify(&renamed.encode().unwrap(), &account()).unwrap();
    assert_eq!(
        pin.check(&renamed),
        Err(UpdateError::Equivocation { version: 2 })
    );

    // A newer version that renames is a change, not an error.
    let mut v3 = renamed.signed().clone();
    v3.body.list_version = 3;
    let v3 = VerifiedDeviceList::verify(&resign(&ak, &v3).encode().unwrap(), &account()).unwrap();
    let Update::Advanced(change) = pin.check(&v3).unwrap() else {
        panic!("not advanced")
    };
    assert_eq!(change.changed.len(), 1);
    assert_eq!(change.changed[0].1.name.as_str(), "Laptop");

    // Device 2 removed and a different device put back under id 2: reused id.
    let removed = ak.remove_device(&v2, 2, 5).unwrap();
    let pin3 = DeviceListPin::new(removed.clone());
    let other = Device::new();
    let mut reused = removed.signed().clone();
    reused.body.list_version = 4;
    reused.body.entries.push(DeviceEntry {
        device_id: 2,
        identity: other.identity,
        role: DeviceRole::Linked,
        added_at: 0,
        name: name("Tablet"),
    });
    reused.bindings.push(
        other
            .signing
            .sign(&sealpost_devices::binding_message(
                &account(),
                &ak.public(),
                &other.identity,
            ))
            .to_bytes(),
    );
    let reused =
        VerifiedDeviceList::verify(&resign(&ak, &reused).encode().unwrap(), &account()).unwrap();
    assert_eq!(
        pin3.check(&reused),
        Err(UpdateError::DeviceIdReused { device_id: 2 })
    );

    // Same id, other identity.
    let mut swapped = v2.signed().clone();
    swapped.body.list_version = 5;
    swapped.body.entries[1].identity = other.identity;
    swapped.bindings[1] = other
        .signing
        .sign(&sealpost_devices::binding_message(
            &account(),
            &ak.public(),
            &other.identity,
        ))
        .to_bytes();
    let swapped =
        VerifiedDeviceList::verify(&resign(&ak, &swapped).encode().unwrap(), &account()).unwrap();
    assert_eq!(
        pin.check(&swapped),
        Err(UpdateError::IdentityChanged { device_id: 2 })
    );

    // next_device_id going down.
    let mut lowered = v2.signed().clone();
    lowered.body.list_version = 6;
    lowered.body.entries.truncate(1);
    lowered.bindings.truncate(1);
    lowered.body.next_device_id = 2;
    let lowered =
        VerifiedDeviceList::verify(&resign(&ak, &lowered).encode().unwrap(), &account()).unwrap();
    assert_eq!(
        pin.check(&lowered),
        Err(UpdateError::DeviceIdReused { device_id: 2 })
    );
}

#[test]
fn verification_checks_every_rule_in_order() {
    let (ak, phone, v1) = consumer();
    let bytes = v1.as_bytes();
    assert_eq!(
        VerifiedDeviceList::verify(bytes, &AccountId::new("+15551230002").unwrap()),
        Err(DeviceListError::WrongAccount)
    );
    assert!(matches!(
        VerifiedDeviceList::verify(&bytes[..bytes.len() - 1], &account()),
        Err(DeviceListError::Decode(DecodeError::Truncated { .. }))
    ));
    // A small-order account key.
    let mut weak = v1.signed().clone();
    weak.body.account_key = [0; 32];
    weak.body.account_key[0] = 1;
    assert_eq!(
        VerifiedDeviceList::verify(&weak.encode().unwrap(), &account()),
        Err(DeviceListError::InvalidAccountKey)
    );
    // A flipped signature bit.
    let mut bad = bytes.to_vec();
    let sig_at = bad.len() - 128;
    bad[sig_at] ^= 1;
    assert_eq!(
        VerifiedDeviceList::verify(&bad, &account()),
        Err(DeviceListError::BadSignature)
    );
    // A flipped binding bit.
    let mut bad = bytes.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(
        VerifiedDeviceList::verify(&bad, &account()),
        Err(DeviceListError::BadBinding { device_id: 1 })
    );
    // No key holder; two key holders; mixed families.
    for roles in [
        vec![DeviceRole::Linked],
        vec![DeviceRole::Primary, DeviceRole::Primary],
        vec![DeviceRole::Primary, DeviceRole::Agent],
        vec![DeviceRole::Owner, DeviceRole::Linked],
    ] {
        let mut l = v1.signed().clone();
        l.body.next_device_id = 10;
        l.body.entries = roles
            .iter()
            .enumerate()
            .map(|(i, &role)| DeviceEntry {
                device_id: u32::try_from(i).unwrap() + 1,
                identity: Device::new().identity,
                role,
                added_at: 0,
                name: name("x"),
            })
            .collect();
        l.bindings = vec![[0; 64]; roles.len()];
        let l = resign(&ak, &l);
        assert_eq!(
            VerifiedDeviceList::verify(&l.encode().unwrap(), &account()),
            Err(DeviceListError::Roles),
            "{roles:?}"
        );
    }
    // The same identity twice, and the account key used as an identity.
    let mut twice = v1.signed().clone();
    twice.body.next_device_id = 3;
    let mut copy = twice.body.entries[0].clone();
    copy.device_id = 2;
    copy.role = DeviceRole::Linked;
    twice.body.entries.push(copy);
    twice.bindings.push(twice.bindings[0]);
    assert_eq!(
        VerifiedDeviceList::verify(&resign(&ak, &twice).encode().unwrap(), &account()),
        Err(DeviceListError::DuplicateKey)
    );
    let mut own = v1.signed().clone();
    own.body.entries[0].identity.signing = ak.public().to_bytes();
    assert_eq!(
        VerifiedDeviceList::verify(&resign(&ak, &own).encode().unwrap(), &account()),
        Err(DeviceListError::DuplicateKey)
    );
    // A first list whose binding is signed by another key.
    let stranger = Device::new();
    let mut rng = rand::rng();
    let ak2 = AccountKeyPair::generate(&mut rng);
    assert_eq!(
        ak2.first_list(
            &account(),
            1,
            phone.identity,
            DeviceRole::Primary,
            name("Phone"),
            0,
            stranger.signer()
        )
        .unwrap_err(),
        LinkError::WrongKey
    );
    assert_eq!(
        ak2.first_list(
            &account(),
            1,
            phone.identity,
            DeviceRole::Linked,
            name("Phone"),
            0,
            phone.signer()
        )
        .unwrap_err(),
        LinkError::Roles
    );
}

#[test]
fn provisioning_refuses_what_it_must() {
    let (ak, _phone, v1) = consumer();
    let desktop = Device::new();
    let mut rng = rand::rng();
    let request = LinkRequest::new(&mut rng, [1; 16], desktop.identity);
    let invitation = request.invitation().clone();
    let body = ak
        .link_device(
            &v1,
            desktop.identity,
            DeviceRole::Linked,
            name("Desktop"),
            9,
        )
        .unwrap();
    let sealed = seal_provisioning(&mut rng, &invitation, &body).unwrap();

    // Any flipped bit is a failed decryption, and the request stays usable.
    for i in [0usize, 2, 40, sealed.len() - 1] {
        let mut b = sealed.clone();
        b[i] ^= 0x01;
        let err = request.open(&b).unwrap_err();
        assert!(
            matches!(err, LinkError::Decrypt | LinkError::Decode(_)),
            "byte {i}: {err:?}"
        );
    }
    // Sealed to another invitation (another ephemeral key or provisioning id).
    let other = LinkRequest::new(&mut rng, [1; 16], desktop.identity);
    assert_eq!(other.open(&sealed).unwrap_err(), LinkError::Decrypt);
    let mut moved = invitation.clone();
    moved.provisioning_id = [2; 16];
    let sealed_moved = seal_provisioning(&mut rng, &moved, &body).unwrap();
    assert_eq!(request.open(&sealed_moved).unwrap_err(), LinkError::Decrypt);
    // A small-order ephemeral key in the envelope.
    let mut small = sealed.clone();
    small[2..34].copy_from_slice(&[0; 32]);
    assert_eq!(
        request.open(&small).unwrap_err(),
        LinkError::NonContributory
    );
    // The key holder refuses to seal a list that names another identity.
    let mut wrong_identity = invitation.clone();
    wrong_identity.identity = Device::new().identity;
    assert_eq!(
        seal_provisioning(&mut rng, &wrong_identity, &body).unwrap_err(),
        LinkError::NotListed
    );
    // The original still opens; completing it with another key is refused.
    let provisioned = request.open(&sealed).unwrap();
    assert_eq!(provisioned.device_id(), 2);
    assert_eq!(
        provisioned.complete(Device::new().signer()).unwrap_err(),
        LinkError::WrongKey
    );
    // Linking a second key holder, or a business role into a consumer list, is refused.
    assert_eq!(
        ak.link_device(&v1, desktop.identity, DeviceRole::Primary, name("x"), 0)
            .unwrap_err(),
        LinkError::Roles
    );
    assert_eq!(
        ak.link_device(&v1, desktop.identity, DeviceRole::Agent, name("x"), 0)
            .unwrap_err(),
        LinkError::Roles
    );
    // Only the account key that signed the current list can sign the next.
    let other_key = AccountKeyPair::generate(&mut rng);
    assert_eq!(
        other_key
            .link_device(&v1, desktop.identity, DeviceRole::Linked, name("x"), 0)
            .unwrap_err(),
        LinkError::WrongKey
    );
}

#[test]
fn invitation_text_is_exact() {
    let desktop = Device::new();
    let request = LinkRequest::new(&mut rand::rng(), [5; 16], desktop.identity);
    let text = request.invitation_text();
    assert!(text.starts_with("sealpost-link:"));
    assert_eq!(text.len(), "sealpost-link:".len() + 152);
    assert_eq!(&parse_invitation(&text).unwrap(), request.invitation());
    for bad in [
        text.replacen("sealpost-link:", "sealpost-lnk:", 1),
        format!("{text}="),
        format!("{text}A"),
        text[..text.len() - 1].to_string(),
        text.replacen('A', "+", 1).replacen('-', "+", 1),
        format!(" {text}"),
    ] {
        assert!(
            parse_invitation(&bad).is_err() || bad == text,
            "accepted {bad:?}"
        );
    }
}

#[test]
fn business_lists_link_agents_and_bots() {
    let mut rng = rand::rng();
    let ak = AccountKeyPair::generate(&mut rng);
    let owner = Device::new();
    let v1 = ak
        .first_list(
            &account(),
            1,
            owner.identity,
            DeviceRole::Owner,
            name("Shop owner"),
            0,
            owner.signer(),
        )
        .unwrap();
    let bot = Device::new();
    let request = LinkRequest::new(&mut rng, [3; 16], bot.identity);
    let body = ak
        .link_device(&v1, bot.identity, DeviceRole::Bot, name("Order bot"), 1)
        .unwrap();
    let sealed = seal_provisioning(&mut rng, request.invitation(), &body).unwrap();
    let v2 = request
        .open(&sealed)
        .unwrap()
        .complete(bot.signer())
        .unwrap();
    assert_eq!(v2.device(2).unwrap().role, DeviceRole::Bot);
    assert_eq!(v2.key_holder().unwrap().name.as_str(), "Shop owner");
    assert_eq!(
        ak.link_device(
            &v2,
            Device::new().identity,
            DeviceRole::Linked,
            name("x"),
            2
        )
        .unwrap_err(),
        LinkError::Roles
    );
}

/// A business account: key, owner (device 1) and an agent (device 2, linked).
fn business_with_agent() -> (AccountKeyPair, Device, VerifiedDeviceList) {
    let ak = AccountKeyPair::generate(&mut rand::rng());
    let owner = Device::new();
    let v1 = ak
        .first_list(
            &account(),
            1,
            owner.identity,
            DeviceRole::Owner,
            name("Shop owner"),
            0,
            owner.signer(),
        )
        .unwrap();
    let agent = Device::new();
    let v2 = link(&ak, &v1, &agent, DeviceRole::Agent, "Lina, support");
    (ak, agent, v2)
}

#[test]
fn update_device_renames_and_changes_the_role_and_nothing_else() {
    let (ak, agent, v2) = business_with_agent();
    let v3 = ak
        .update_device(&v2, 2, name("Lina, sales"), DeviceRole::Admin, 5_000)
        .unwrap();
    assert_eq!(v3.list_version(), 3);
    assert_eq!(v3.issued_at(), 5_000);
    assert_eq!(v3.next_device_id(), v2.next_device_id());
    let (before, after) = (v2.device(2).unwrap(), v3.device(2).unwrap());
    assert_eq!(after.name.as_str(), "Lina, sales");
    assert_eq!(after.role, DeviceRole::Admin);
    assert_eq!(after.identity, agent.identity);
    assert_eq!(after.added_at, before.added_at);
    assert_eq!(v3.signed().bindings, v2.signed().bindings);
    assert_eq!(v3.device(1), v2.device(1));
    // Contacts see one changed device, as it is now.
    match DeviceListPin::new(v2.clone()).check(&v3).unwrap() {
        Update::Advanced(change) => {
            assert!(change.added.is_empty() && change.removed.is_empty());
            assert_eq!(change.changed.len(), 1);
            assert_eq!(change.changed[0].1.name.as_str(), "Lina, sales");
            assert_eq!(change.changed[0].1.role, DeviceRole::Admin);
        }
        other => panic!("{other:?}"),
    }
    // The key holder may be renamed, keeping its role.
    let v4 = ak
        .update_device(&v3, 1, name("Shop"), DeviceRole::Owner, 6_000)
        .unwrap();
    assert_eq!(v4.key_holder().unwrap().name.as_str(), "Shop");
}

#[test]
fn update_device_refuses_foreign_roles_key_holder_roles_unknown_ids_and_other_keys() {
    let (ak, _agent, v2) = business_with_agent();
    let refuse = |id, role| ak.update_device(&v2, id, name("x"), role, 1).unwrap_err();
    // A role of the other family, for a device or the key holder.
    assert_eq!(refuse(2, DeviceRole::Linked), LinkError::Roles);
    assert_eq!(refuse(2, DeviceRole::Primary), LinkError::Roles);
    assert_eq!(refuse(1, DeviceRole::Primary), LinkError::Roles);
    // A second key holder, or a key holder that gives up its role.
    assert_eq!(refuse(2, DeviceRole::Owner), LinkError::Roles);
    assert_eq!(refuse(1, DeviceRole::Admin), LinkError::Roles);
    // An id that is not listed.
    assert_eq!(refuse(3, DeviceRole::Agent), LinkError::NotListed);
    assert_eq!(refuse(0, DeviceRole::Agent), LinkError::NotListed);
    // Another account key.
    let other = AccountKeyPair::generate(&mut rand::rng());
    assert_eq!(
        other
            .update_device(&v2, 2, name("x"), DeviceRole::Bot, 1)
            .unwrap_err(),
        LinkError::WrongKey
    );
    // On a consumer list, a linked device cannot become an agent or a primary.
    let (ak, _phone, v1) = consumer();
    let desktop = Device::new();
    let v2 = link(&ak, &v1, &desktop, DeviceRole::Linked, "Desktop");
    for role in [DeviceRole::Agent, DeviceRole::Primary, DeviceRole::Owner] {
        assert_eq!(
            ak.update_device(&v2, 2, name("x"), role, 1).unwrap_err(),
            LinkError::Roles,
            "{role:?}"
        );
    }
}

#[test]
fn a_flipped_role_or_name_byte_fails_verification() {
    let (_ak, _agent, v2) = business_with_agent();
    let bytes = v2.as_bytes();
    // The agent's entry: `role (1) || added_at (8) || name_len (1) || name`.
    let name_at = bytes
        .windows(b"Lina, support".len())
        .position(|w| w == b"Lina, support")
        .unwrap();
    let role_at = name_at - 1 - 8 - 1;
    assert_eq!(bytes[role_at], 0x12, "the agent's role byte");
    // Agent → bot (0x13), and agent → admin (0x11): valid roles, not signed ones.
    for flip in [0x01, 0x03] {
        let mut bad = bytes.to_vec();
        bad[role_at] ^= flip;
        assert_eq!(
            VerifiedDeviceList::verify(&bad, &account()),
            Err(DeviceListError::BadSignature),
            "role byte {:#04x}",
            bad[role_at]
        );
    }
    // "Lina" → "lina", and the owner's name too: still valid names, not signed ones.
    let owner_at = bytes
        .windows(b"Shop owner".len())
        .position(|w| w == b"Shop owner")
        .unwrap();
    for at in [name_at, owner_at + 9] {
        let mut bad = bytes.to_vec();
        bad[at] ^= 0x20;
        assert_eq!(
            VerifiedDeviceList::verify(&bad, &account()),
            Err(DeviceListError::BadSignature),
            "name byte {at}"
        );
    }
}
