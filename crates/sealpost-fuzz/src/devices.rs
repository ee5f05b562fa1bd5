//! Linked-device targets (`spec/devices.md`): device-list verification and the update
//! rule, opening provisioning messages, and history-bundle parts.

use sealpost_crypto::ed25519::SigningKey;
use sealpost_crypto::x25519::X25519Secret;
use sealpost_devices::hazmat::{link_request_with_secret, seal_provisioning_with_secret};
use sealpost_devices::{
    AccountKeyPair, DeviceListPin, DeviceRole, LinkError, LinkRequest, Update, VerifiedDeviceList,
    parse_invitation,
};
use sealpost_wire::devices::{DeviceName, HistoryPart, SignedDeviceList, pack_history};
use sealpost_wire::{AccountId, IdentityBytes};
use std::sync::OnceLock;

/// The fixed account of both targets: version 1 (the phone) and version 2 (a desktop
/// linked), the desktop's link request, and the genuine envelope that links it.
pub struct DevicesFixture {
    /// The account.
    pub account: AccountId,
    /// Version 1.
    pub v1: VerifiedDeviceList,
    /// Version 2.
    pub v2: VerifiedDeviceList,
    /// The desktop's side of linking.
    pub request: LinkRequest,
    /// The key holder's envelope for it.
    pub envelope: Vec<u8>,
}

fn device(seed: u8) -> (SigningKey, IdentityBytes) {
    let signing = SigningKey::from_seed(&[seed; 32]);
    let dh = X25519Secret::from_bytes([seed.wrapping_add(1); 32]);
    let identity = IdentityBytes {
        signing: signing.verifying_key().to_bytes(),
        dh: dh.public_key().to_bytes(),
    };
    (signing, identity)
}

/// Built once.
pub fn devices_fixture() -> &'static DevicesFixture {
    static F: OnceLock<DevicesFixture> = OnceLock::new();
    F.get_or_init(|| {
        let account = AccountId::new("+15551230001").unwrap();
        let ak = AccountKeyPair::from_seed(&[0x41; 32]);
        let (phone, phone_identity) = device(0x10);
        let (desktop, desktop_identity) = device(0x20);
        let v1 = ak
            .first_list(
                &account,
                1,
                phone_identity,
                DeviceRole::Primary,
                DeviceName::new("Phone").unwrap(),
                1,
                |m| phone.sign(m),
            )
            .unwrap();
        let request = link_request_with_secret([0x51; 32], [0x61; 16], desktop_identity);
        let body = ak
            .link_device(
                &v1,
                desktop_identity,
                DeviceRole::Linked,
                DeviceName::new("Desktop").unwrap(),
                2,
            )
            .unwrap();
        let envelope =
            seal_provisioning_with_secret([0x71; 32], request.invitation(), &body).unwrap();
        let v2 = request
            .open(&envelope)
            .unwrap()
            .complete(|m| desktop.sign(m))
            .unwrap();
        DevicesFixture {
            account,
            v1,
            v2,
            request,
            envelope,
        }
    })
}

/// `VerifiedDeviceList::verify` on arbitrary bytes for the fixture's account, then the
/// update rule against both fixture lists:
///
/// - never panics;
/// - decoding is canonical (`Ok` values re-encode to the input), and verification only
///   accepts what decodes;
/// - an accepted list is signed by the fixture's account key only if it is one of the
///   fixture's lists (nobody else holds that key): every other list under that key would be
///   a forgery, so it must be refused;
/// - the update rule is deterministic and never advances to an older version.
pub fn device_list(data: &[u8]) {
    let f = devices_fixture();
    let decoded = SignedDeviceList::decode(data);
    if let Ok(list) = &decoded {
        assert_eq!(list.encode().unwrap(), data, "device list is not canonical");
    }
    let verified = VerifiedDeviceList::verify(data, &f.account);
    let _ = format!("{verified:?}");
    let Ok(verified) = verified else {
        return;
    };
    assert!(decoded.is_ok(), "verified a list that does not decode");
    assert_eq!(verified.as_bytes(), data);
    if verified.account_key() == f.v1.account_key() {
        assert!(
            data == f.v1.as_bytes() || data == f.v2.as_bytes(),
            "a list under the fixture's account key that it never signed was accepted"
        );
    }
    for pinned in [&f.v1, &f.v2] {
        let pin = DeviceListPin::new(pinned.clone());
        let first = pin.check(&verified);
        assert_eq!(first, pin.check(&verified));
        if let Ok(Update::Advanced(_)) = first {
            assert!(verified.list_version() > pinned.list_version());
        }
    }
}

/// The fixture's desktop opens an arbitrary provisioning envelope, and `parse_invitation`
/// reads arbitrary text:
///
/// - never panics;
/// - only the genuine envelope opens (any other would mean a forged or altered message got
///   through the AEAD), and a failed open leaves the request usable;
/// - an accepted invitation text re-encodes to the same text.
pub fn provisioning_open(data: &[u8]) {
    let f = devices_fixture();
    match f.request.open(data) {
        Ok(link) => {
            assert_eq!(
                data,
                &f.envelope[..],
                "a forged provisioning envelope opened"
            );
            assert_eq!(link.device_id(), 2);
        }
        Err(e) => {
            let _ = format!("{e}");
            assert!(
                !matches!(e, LinkError::WrongKey | LinkError::Full),
                "open cannot fail with {e:?}"
            );
        }
    }
    if let Ok(text) = core::str::from_utf8(data)
        && let Ok(invitation) = parse_invitation(text)
    {
        let again =
            link_request_with_secret([1; 32], invitation.provisioning_id, invitation.identity);
        assert_eq!(
            again.invitation().provisioning_id,
            invitation.provisioning_id
        );
        assert!(text.starts_with(sealpost_devices::LINK_TEXT_PREFIX));
    }
    // The genuine envelope still opens after whatever came before.
    assert!(f.request.open(&f.envelope).is_ok());
}

/// A history part (`spec/devices.md` section 6.4) from arbitrary bytes:
///
/// - never panics; decoding is canonical (`Ok` values re-encode to the input);
/// - packing the decoded records again keeps every one of them, in order, in parts that
///   each decode to themselves and stay within the limit (a record that came out of a part
///   always fits in one).
pub fn history_part(data: &[u8]) {
    let Ok(part) = HistoryPart::decode(data) else {
        return;
    };
    let _ = format!("{part:?}");
    assert_eq!(
        part.encode().unwrap(),
        data,
        "history part is not canonical"
    );
    let packed = pack_history(part.bundle_id, part.records.clone()).unwrap();
    assert!(packed.left_out.is_empty(), "a decoded record did not fit");
    let mut again = Vec::new();
    for p in packed.parts {
        let bytes = p.encode().unwrap();
        assert_eq!(HistoryPart::decode(&bytes).unwrap(), p);
        again.extend(p.records);
    }
    assert_eq!(again, part.records);
}
