//! A customer and a shop establish a Sealpost session and talk.
//!
//! Run with `cargo run -p sealpost-examples --example session_demo`.
//!
//! No relay exists yet in this example: the "relay" is a pair of in-memory queues that,
//! like a real one, only ever sees the encoded bytes printed below. It delivers some
//! messages out of order and loses one, and the shop's device restarts from an encrypted
//! pickle halfway through.
// Example code: fixed-size demo data is indexed directly and the test unwraps.
#![allow(clippy::print_stdout, clippy::indexing_slicing, clippy::unwrap_used)]

use anyhow::{Context, Result, bail};
use sealpost_session::{
    AccountId, DeviceAddress, DeviceId, IdentityKeyPair, KemPreKeyKind, PickleKey, PreKeyStore,
    SafetyNumber, Session, SessionAddresses, SessionConfig, SessionMessage, VerifiedBundle,
    initiate, respond,
};
use std::io::Write;

fn show(out: &mut impl Write, who: &str, bytes: &[u8]) -> Result<()> {
    let kind = match bytes.get(1) {
        Some(2) => "prekey message",
        _ => "ratchet message",
    };
    let head: String = bytes.iter().take(12).map(|b| format!("{b:02x}")).collect();
    writeln!(
        out,
        "    relay carries {who}: {kind}, {} bytes, {head}…",
        bytes.len()
    )?;
    Ok(())
}

/// The whole demo, writing its narration to `out`.
pub fn run(out: &mut impl Write) -> Result<()> {
    let mut rng = rand::rng();
    let now = 1_767_225_600; // the caller supplies time; protocol crates never read a clock
    let config = SessionConfig::default();

    // The shop's support device publishes its identity and prekeys.
    let shop_account = AccountId::new("+15550100200")?;
    let shop = IdentityKeyPair::generate(&mut rng);
    let mut shop_prekeys = PreKeyStore::new();
    shop_prekeys.generate_signed_prekey(&mut rng, &shop, now);
    shop_prekeys.generate_one_time_prekeys(&mut rng, 20);
    shop_prekeys.generate_kem_prekeys(&mut rng, &shop, KemPreKeyKind::OneTime, 5, now);
    shop_prekeys.generate_kem_prekeys(&mut rng, &shop, KemPreKeyKind::LastResort, 1, now);
    let bundle_bytes = shop_prekeys
        .bundle(&shop, 1, true)
        .context("shop has prekeys")?
        .encode();
    writeln!(
        out,
        "shop publishes a prekey bundle of {} bytes",
        bundle_bytes.len()
    )?;

    // The customer fetches the bundle, verifies its signatures and starts a session.
    let customer_account = AccountId::new("+15550100999")?;
    let customer = IdentityKeyPair::generate(&mut rng);
    let bundle = VerifiedBundle::verify(&sealpost_wire::PreKeyBundle::decode(&bundle_bytes)?)?;
    // Every session is bound to both device addresses (they enter the handshake's
    // associated data), so a relay that relabels sender or recipient breaks decryption.
    let shop_device = DeviceAddress::new(shop_account.clone(), DeviceId(1));
    let customer_device = DeviceAddress::new(customer_account.clone(), DeviceId(1));
    let to_shop = SessionAddresses::new(customer_device.clone(), shop_device.clone());
    let mut c = initiate(&mut rng, &customer, &to_shop, &bundle, config)?;

    let first = c.encrypt(b"Hi! Where is my order #4471?")?.encode();
    show(out, "customer -> shop", &first)?;
    let SessionMessage::PreKey(pkm) = SessionMessage::decode(&first)? else {
        bail!("the first message must be a prekey message");
    };
    // The relay says the customer's device sent it: that is the sender the shop expects.
    let from_customer = SessionAddresses::new(shop_device, customer_device);
    let (mut s, text) = respond(
        &mut rng,
        &shop,
        &from_customer,
        &mut shop_prekeys,
        &pkm,
        config,
    )?;
    writeln!(out, "shop reads: {}", String::from_utf8_lossy(&text))?;

    let reply = s.encrypt(b"It left our warehouse this morning.")?.encode();
    show(out, "shop -> customer", &reply)?;
    writeln!(
        out,
        "customer reads: {}",
        String::from_utf8_lossy(&c.decrypt_bytes(&mut rng, &reply)?)
    )?;

    // Three messages; the relay delivers them out of order and loses the second.
    let m: Vec<Vec<u8>> = [
        "Great, thanks.",
        "Can I change the address?",
        "It's 12 Harbour St.",
    ]
    .iter()
    .map(|t| c.encrypt(t.as_bytes()).map(|m| m.encode()))
    .collect::<Result<_, _>>()?;
    for i in [2usize, 0] {
        show(out, "customer -> shop", &m[i])?;
        writeln!(
            out,
            "shop reads: {}",
            String::from_utf8_lossy(&s.decrypt_bytes(&mut rng, &m[i])?)
        )?;
    }
    writeln!(
        out,
        "    (message 2 was lost; its key waits, {} skipped key stored)",
        s.skipped_key_count()
    )?;

    // A replay is refused and changes nothing.
    match s.decrypt_bytes(&mut rng, &m[0]) {
        Err(e) => writeln!(out, "    relay replays a message: refused ({e})")?,
        Ok(_) => bail!("a replayed message must be refused"),
    }

    // The shop's device restarts: its session is stored encrypted under an app key.
    let app_key = PickleKey::new(rand::random());
    let pickle = s.pickle(&mut rng, &app_key);
    drop(s);
    let mut s = Session::unpickle(&pickle, &app_key)?;
    writeln!(
        out,
        "shop restarts from a {}-byte encrypted pickle",
        pickle.len()
    )?;

    // The lost message arrives late and still decrypts.
    writeln!(
        out,
        "shop reads (late): {}",
        String::from_utf8_lossy(&s.decrypt_bytes(&mut rng, &m[1])?)
    )?;
    let done = s.encrypt(b"Updated. Delivery tomorrow.")?.encode();
    writeln!(
        out,
        "customer reads: {}",
        String::from_utf8_lossy(&c.decrypt_bytes(&mut rng, &done)?)
    )?;

    // Both sides compare safety numbers (in person, or by scanning the QR payload).
    let on_customer = SafetyNumber::new(
        &customer.public(),
        &customer_account,
        s.local_identity(),
        &shop_account,
    );
    let on_shop = SafetyNumber::new(
        s.local_identity(),
        &shop_account,
        c.local_identity(),
        &customer_account,
    );
    if on_customer.digits() != on_shop.digits() {
        bail!("safety numbers differ");
    }
    on_shop.verify_scanned(&on_customer.qr_payload())?;
    writeln!(
        out,
        "safety number: {}",
        on_customer.display_groups().join(" ")
    )?;
    writeln!(
        out,
        "the shop scanned the customer's QR code: identities verified"
    )?;
    Ok(())
}

fn main() -> Result<()> {
    run(&mut std::io::stdout().lock())
}

#[cfg(test)]
mod tests {
    #[test]
    fn demo_runs_and_tells_the_story() {
        let mut out = Vec::new();
        super::run(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for expected in [
            "shop reads: Hi! Where is my order #4471?",
            "customer reads: It left our warehouse this morning.",
            "shop reads (late): Can I change the address?",
            "refused (duplicate",
            "identities verified",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        // The relay's view never contains a plaintext.
        for line in text.lines().filter(|l| l.contains("relay carries")) {
            assert!(!line.contains("order"), "{line}");
        }
    }
}
