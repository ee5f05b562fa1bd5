//! Seeds of the linked-devices targets: device lists and provisioning.

use super::{Seed, seed};

pub(super) fn device_lists() -> Vec<Seed> {
    let f = crate::devices::devices_fixture();
    let t = "device_list";
    let mut v = vec![
        seed(t, "v1", f.v1.as_bytes()),
        seed(t, "v2", f.v2.as_bytes()),
    ];
    // A flipped bit in the signature, and in the last binding.
    let mut bad_signature = f.v2.as_bytes().to_vec();
    let at = bad_signature.len() - 3 * 64;
    bad_signature[at] ^= 1;
    v.push(seed(t, "v2-bad-signature", bad_signature));
    let mut bad_binding = f.v2.as_bytes().to_vec();
    let last = bad_binding.len() - 1;
    bad_binding[last] ^= 1;
    v.push(seed(t, "v2-bad-binding", bad_binding));
    v
}

pub(super) fn provisioning() -> Vec<Seed> {
    let f = crate::devices::devices_fixture();
    let t = "provisioning_open";
    let mut tampered = f.envelope.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    vec![
        seed(t, "genuine", f.envelope.clone()),
        seed(t, "tampered", tampered),
        seed(t, "truncated", f.envelope[..40].to_vec()),
        seed(
            t,
            "invitation-text",
            f.request.invitation_text().into_bytes(),
        ),
    ]
}
