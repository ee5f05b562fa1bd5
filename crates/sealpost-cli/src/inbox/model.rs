//! What the desk shows, as pure functions and a state with no I/O: the conversation list
//! (unassigned / mine / others / resolved), who wrote each message, the handoff check as a
//! status line, and the commands typed in the inbox's input line. `sealpost desk` prints
//! the same words; `sealpost inbox` draws them ([`super::view`]).

use crate::commands::role_word;
use crate::output::{body_text, clock};
use sealpost_client::{
    AccountId, ClientEvent, DeskConversation, DeskNote, DeviceId, DeviceInfo, Direction,
    HandoffCheck, HandoffInfo, HistoryEntry, Side,
};
use std::collections::BTreeSet;

/// Where a conversation is listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// On the default route: whoever answers new conversations may take it.
    Unassigned,
    /// Routed to this device.
    Mine,
    /// Routed to other devices only.
    Others,
    /// Resolved (back on the default route, with its history).
    Resolved,
}

impl Group {
    /// Every group, in the order listed.
    pub const ALL: [Group; 4] = [
        Group::Unassigned,
        Group::Mine,
        Group::Others,
        Group::Resolved,
    ];

    /// Its heading.
    pub fn title(self) -> &'static str {
        match self {
            Group::Unassigned => "Unassigned",
            Group::Mine => "Mine",
            Group::Others => "Others",
            Group::Resolved => "Resolved",
        }
    }

    /// Where `c` is listed.
    pub fn of(c: &DeskConversation) -> Group {
        if c.resolved {
            Group::Resolved
        } else if c.assigned_to.is_empty() {
            Group::Unassigned
        } else if c.mine {
            Group::Mine
        } else {
            Group::Others
        }
    }
}

/// One conversation in the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The customer.
    pub customer: AccountId,
    /// Its group.
    pub group: Group,
    /// The devices it is routed to (empty: unassigned).
    pub assigned_to: Vec<DeviceId>,
    /// The last handoff's status line, if a handoff reached this device.
    pub check: Option<String>,
}

/// The list: every conversation with a desk record, and every customer seen in this run's
/// events without one (unassigned), grouped, then by customer.
pub fn rows(desk: &[DeskConversation], seen: &BTreeSet<AccountId>) -> Vec<Row> {
    let mut out: Vec<Row> = desk
        .iter()
        .map(|c| Row {
            customer: c.customer.clone(),
            group: Group::of(c),
            assigned_to: c.assigned_to.clone(),
            check: c.handoff.as_ref().map(handoff_status),
        })
        .collect();
    for customer in seen {
        if !desk.iter().any(|c| &c.customer == customer) {
            out.push(Row {
                customer: customer.clone(),
                group: Group::Unassigned,
                assigned_to: Vec::new(),
                check: None,
            });
        }
    }
    out.sort_by(|a, b| (a.group, a.customer.as_str()).cmp(&(b.group, b.customer.as_str())));
    out
}

/// A device as agents see it: "Lina, support · agent", "Order bot · bot"; a device the
/// list does not name (removed since) as "device 4".
pub fn device_label(id: DeviceId, devices: &[DeviceInfo]) -> String {
    match devices.iter().find(|d| d.id == id) {
        Some(d) => format!("{} · {}", d.name, role_word(d.role)),
        None => format!("device {}", id.0),
    }
}

/// Devices as a comma-separated list of labels.
pub fn device_labels(ids: &[DeviceId], devices: &[DeviceInfo]) -> String {
    ids.iter()
        .map(|d| device_label(*d, devices))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The handoff check as one status line (spec/business.md 9.3).
pub fn check_status(check: Option<&HandoffCheck>) -> String {
    match check {
        None => "waiting for the customer's confirmation".into(),
        Some(HandoffCheck::Verified {
            confirmed,
            unconfirmed: 0,
        }) => format!("history verified by the customer ({confirmed} messages)"),
        Some(HandoffCheck::Verified {
            confirmed,
            unconfirmed,
        }) => format!(
            "history verified by the customer ({confirmed} messages; {unconfirmed} newer not yet seen by the customer)"
        ),
        Some(HandoffCheck::Incomplete { missing, confirmed }) => format!(
            "INCOMPLETE: {missing} messages the customer had are missing ({confirmed} verified)"
        ),
        Some(HandoffCheck::Mismatch { side, device }) => format!(
            "DOES NOT MATCH what the customer saw (messages of the {} device {device})",
            match side {
                Side::Customer => "customer's",
                _ => "business's",
            }
        ),
        Some(_) => "checked (a result this version does not know)".into(),
    }
}

/// A handoff's status line.
pub fn handoff_status(h: &HandoffInfo) -> String {
    check_status(h.check.as_ref())
}

/// Who has the conversation, in words.
pub fn assignment(c: &DeskConversation, devices: &[DeviceInfo]) -> String {
    match Group::of(c) {
        Group::Unassigned => "unassigned".into(),
        Group::Mine if c.assigned_to.len() == 1 => "mine".into(),
        Group::Mine => format!("mine, with {}", device_labels(&c.assigned_to, devices)),
        Group::Others => format!("assigned to {}", device_labels(&c.assigned_to, devices)),
        Group::Resolved => "resolved".into(),
    }
}

/// One line of a conversation as shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shown {
    /// When (Unix ms).
    pub at: u64,
    /// Who wrote it: "customer", or the business device's name and role.
    pub who: String,
    /// The text.
    pub text: String,
    /// An internal note (never sent to the customer).
    pub internal: bool,
}

impl Shown {
    /// `[HH:MM:SS] who: text`, notes marked.
    pub fn line(&self) -> String {
        let mark = if self.internal { "[internal] " } else { "" };
        format!("[{}] {mark}{}: {}", clock(self.at), self.who, self.text)
    }
}

/// The conversation's messages (with who wrote each) and its internal notes, by time.
pub fn transcript(
    history: &[HistoryEntry],
    notes: &[DeskNote],
    devices: &[DeviceInfo],
    me: DeviceId,
) -> Vec<Shown> {
    let label = |id: DeviceId| {
        let l = device_label(id, devices);
        if id == me { format!("{l} (you)") } else { l }
    };
    let mut out: Vec<Shown> = history
        .iter()
        .map(|h| Shown {
            at: h.timestamp,
            who: match (h.direction, h.sender_device) {
                (Direction::Incoming, _) if h.peer.device.0 == 1 => "customer".into(),
                (Direction::Incoming, _) => format!("customer (device {})", h.peer.device.0),
                (_, Some(d)) => label(d),
                (_, None) => "this business".into(),
            },
            text: body_text(&h.body),
            internal: false,
        })
        .collect();
    out.extend(notes.iter().map(|n| Shown {
        at: n.at,
        who: label(n.from),
        text: crate::output::sanitize(&n.text),
        internal: true,
    }));
    // Stable: messages and notes of the same millisecond keep their order.
    out.sort_by_key(|s| s.at);
    out
}

/// The account a desk event is about, if it is about a customer conversation.
pub fn event_customer(event: &ClientEvent, own: &AccountId) -> Option<AccountId> {
    let account = match event {
        ClientEvent::Message { from, .. } => &from.account,
        ClientEvent::SentByOtherDevice { to, .. } => to,
        ClientEvent::ConversationAssigned { customer, .. }
        | ClientEvent::HandoffReceived { customer, .. }
        | ClientEvent::HandoffChecked { customer, .. }
        | ClientEvent::InternalNote { customer, .. } => customer,
        _ => return None,
    };
    (account != own).then(|| account.clone())
}

/// What a line typed in the inbox asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Nothing.
    Empty,
    /// Send this reply to the selected customer (`//x` sends `/x`).
    Reply(String),
    /// Take the conversation.
    Claim,
    /// Hand it to these devices (names or ids), with a note.
    Transfer {
        /// The device, by name (unique prefix) or id.
        to: String,
        /// The note for the new devices.
        note: String,
    },
    /// Resolve it.
    Resolve,
    /// An internal note.
    Note(String),
    /// Show the help.
    Help,
    /// Leave.
    Quit,
}

/// What the help footer says.
pub const HELP: &str = "↑/↓ select · type a reply + Enter · /claim · /transfer NAME|ID [note] · /resolve · /note TEXT · /help · /quit";

/// Parses a line typed in the inbox; `Err` says what is wrong.
pub fn parse_input(line: &str) -> Result<Input, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(Input::Empty);
    }
    if let Some(rest) = line.strip_prefix("//") {
        return Ok(Input::Reply(format!("/{rest}")));
    }
    let Some(command) = line.strip_prefix('/') else {
        return Ok(Input::Reply(line.to_owned()));
    };
    let (word, rest) = command
        .split_once(char::is_whitespace)
        .map_or((command, ""), |(w, r)| (w, r.trim()));
    match word {
        "claim" => Ok(Input::Claim),
        "resolve" => Ok(Input::Resolve),
        "quit" | "exit" | "q" => Ok(Input::Quit),
        "help" => Ok(Input::Help),
        "note" if rest.is_empty() => Err("/note needs a text: /note TEXT".into()),
        "note" => Ok(Input::Note(rest.to_owned())),
        "transfer" => parse_transfer(rest),
        other => Err(format!("unknown command /{other} (/help lists them)")),
    }
}

/// `/transfer NAME|ID [note]`: a name with spaces in quotes ("Lina, support").
fn parse_transfer(rest: &str) -> Result<Input, String> {
    if rest.is_empty() {
        return Err("/transfer needs a device: /transfer NAME|ID [note]".into());
    }
    let (to, note) = if let Some(quoted) = rest.strip_prefix('"') {
        let (to, note) = quoted
            .split_once('"')
            .ok_or("a quoted device name needs its closing \"")?;
        (to.to_owned(), note.trim().to_owned())
    } else {
        rest.split_once(char::is_whitespace)
            .map_or((rest.to_owned(), String::new()), |(t, n)| {
                (t.to_owned(), n.trim().to_owned())
            })
    };
    if to.is_empty() {
        return Err("/transfer needs a device: /transfer NAME|ID [note]".into());
    }
    Ok(Input::Transfer { to, note })
}

/// A device of the business named by `wanted`: its id, its exact name (any case), or the
/// one name it starts (any case).
pub fn find_device(wanted: &str, devices: &[DeviceInfo]) -> Result<DeviceId, String> {
    let wanted = wanted.trim();
    if let Ok(id) = wanted.parse::<u32>() {
        return devices
            .iter()
            .find(|d| d.id.0 == id)
            .map(|d| d.id)
            .ok_or_else(|| format!("no device {id} on the business's list"));
    }
    let lower = wanted.to_lowercase();
    if let Some(d) = devices.iter().find(|d| d.name.to_lowercase() == lower) {
        return Ok(d.id);
    }
    let matches: Vec<&DeviceInfo> = devices
        .iter()
        .filter(|d| d.name.to_lowercase().starts_with(&lower))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.id),
        [] => Err(format!("no device named {wanted:?} on the business's list")),
        many => Err(format!(
            "{wanted:?} names {} devices ({}): give more of the name or the id",
            many.len(),
            many.iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The inbox's state: what the client said last, the selection and the input line.
#[derive(Debug, Default)]
pub struct Inbox {
    /// This device.
    pub me: Option<DeviceInfo>,
    /// The business's devices (the signed list).
    pub devices: Vec<DeviceInfo>,
    /// Conversations with a desk record.
    pub desk: Vec<DeskConversation>,
    /// Customers seen in events of this run.
    pub seen: BTreeSet<AccountId>,
    /// The selected customer.
    pub selected: Option<AccountId>,
    /// The selected conversation's state.
    pub detail: Option<DeskConversation>,
    /// Its messages and notes.
    pub transcript: Vec<Shown>,
    /// The input line.
    pub input: String,
    /// The last status or error.
    pub status: String,
    /// Whether the connection is up.
    pub connected: bool,
}

impl Inbox {
    /// The list as shown.
    pub fn rows(&self) -> Vec<Row> {
        rows(&self.desk, &self.seen)
    }

    /// Takes in an event; returns whether the list or the selected conversation must be
    /// read again from the client.
    pub fn apply(&mut self, event: &ClientEvent, own: &AccountId) -> bool {
        match event {
            ClientEvent::Connected => {
                self.connected = true;
                false
            }
            ClientEvent::Disconnected => {
                self.connected = false;
                false
            }
            ClientEvent::DevicesChanged { account, .. } => account == own,
            ClientEvent::HandoffChecked { customer, check } => {
                self.status = format!("{}: {}", customer.as_str(), check_status(Some(check)));
                true
            }
            ClientEvent::HandoffReceived {
                customer, messages, ..
            } => {
                self.status = format!(
                    "{} was handed to you with {messages} messages",
                    customer.as_str()
                );
                self.note_customer(event, own);
                true
            }
            ClientEvent::Lagged { .. } => true,
            _ => self.note_customer(event, own),
        }
    }

    fn note_customer(&mut self, event: &ClientEvent, own: &AccountId) -> bool {
        match event_customer(event, own) {
            Some(c) => {
                self.seen.insert(c.clone());
                if self.selected.is_none() {
                    self.selected = Some(c);
                }
                true
            }
            None => false,
        }
    }

    /// Keeps the selection on a listed conversation (the first when none is).
    pub fn fix_selection(&mut self) {
        let rows = self.rows();
        let listed = self
            .selected
            .as_ref()
            .is_some_and(|s| rows.iter().any(|r| &r.customer == s));
        if !listed {
            self.selected = rows.first().map(|r| r.customer.clone());
        }
    }

    /// Moves the selection by `step` rows (negative: up), staying on the list.
    pub fn select(&mut self, step: isize) {
        let rows = self.rows();
        if rows.is_empty() {
            self.selected = None;
            return;
        }
        let at = self
            .selected
            .as_ref()
            .and_then(|s| rows.iter().position(|r| &r.customer == s))
            .unwrap_or(0);
        let last = rows.len() - 1;
        let next = at.saturating_add_signed(step).min(last);
        self.selected = rows.get(next).map(|r| r.customer.clone());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use sealpost_client::{DeviceAddress, DeviceRole, MessageBody, MessageId, MessageStatus};

    fn acct(s: &str) -> AccountId {
        AccountId::new(s).unwrap()
    }

    fn device(id: u32, name: &str, role: DeviceRole) -> DeviceInfo {
        DeviceInfo {
            id: DeviceId(id),
            name: name.into(),
            role,
        }
    }

    fn shop() -> Vec<DeviceInfo> {
        vec![
            device(1, "Owner", DeviceRole::Owner),
            device(2, "Order bot", DeviceRole::Bot),
            device(3, "Lina, support", DeviceRole::Agent),
            device(4, "Lars, support", DeviceRole::Agent),
        ]
    }

    fn conv(c: &str, to: &[u32], me: u32, resolved: bool) -> DeskConversation {
        let assigned_to: Vec<DeviceId> = to.iter().map(|d| DeviceId(*d)).collect();
        DeskConversation {
            customer: acct(c),
            resolved,
            mine: assigned_to.contains(&DeviceId(me)),
            assigned_to,
            notes: Vec::new(),
            handoff: None,
        }
    }

    #[test]
    fn the_list_groups_conversations_and_adds_customers_seen() {
        let desk = vec![
            conv("+15550000004", &[], 3, true),
            conv("+15550000003", &[4], 3, false),
            conv("+15550000002", &[3], 3, false),
            conv("+15550000001", &[], 3, false),
        ];
        let seen: BTreeSet<AccountId> = [acct("+15550000009"), acct("+15550000002")].into();
        let rows = rows(&desk, &seen);
        let shown: Vec<(&str, Group)> = rows
            .iter()
            .map(|r| (r.customer.as_str(), r.group))
            .collect();
        assert_eq!(
            shown,
            vec![
                ("+15550000001", Group::Unassigned),
                ("+15550000009", Group::Unassigned),
                ("+15550000002", Group::Mine),
                ("+15550000003", Group::Others),
                ("+15550000004", Group::Resolved),
            ]
        );
        assert_eq!(
            assignment(&desk[1], &shop()),
            "assigned to Lars, support · agent"
        );
        assert_eq!(assignment(&desk[2], &shop()), "mine");
    }

    #[test]
    fn events_add_customers_and_ask_for_a_reload() {
        let own = acct("+15550000100");
        let mut inbox = Inbox::default();
        let message = ClientEvent::InternalNote {
            customer: acct("+15550000001"),
            from: DeviceId(2),
            text: "VIP".into(),
        };
        assert!(inbox.apply(&message, &own));
        assert_eq!(inbox.selected, Some(acct("+15550000001")));
        assert_eq!(inbox.rows().len(), 1);
        // The business's own account is never a customer.
        let own_note = ClientEvent::SentByOtherDevice {
            device: DeviceId(2),
            to: own.clone(),
            message_id: MessageId::random(),
            body: MessageBody::Text("x".into()),
            timestamp: 0,
        };
        assert!(!inbox.apply(&own_note, &own));
        assert!(!inbox.apply(&ClientEvent::Connected, &own));
        assert!(inbox.connected);
        let checked = ClientEvent::HandoffChecked {
            customer: acct("+15550000001"),
            check: HandoffCheck::Mismatch {
                side: Side::Business,
                device: 2,
            },
        };
        assert!(inbox.apply(&checked, &own));
        assert!(inbox.status.contains("DOES NOT MATCH"), "{}", inbox.status);
    }

    #[test]
    fn selection_moves_within_the_list() {
        let mut inbox = Inbox {
            desk: vec![
                conv("+15550000001", &[], 3, false),
                conv("+15550000002", &[3], 3, false),
            ],
            ..Inbox::default()
        };
        inbox.fix_selection();
        assert_eq!(inbox.selected, Some(acct("+15550000001")));
        inbox.select(1);
        inbox.select(1);
        assert_eq!(inbox.selected, Some(acct("+15550000002")));
        inbox.select(-5);
        assert_eq!(inbox.selected, Some(acct("+15550000001")));
    }

    #[test]
    fn check_lines() {
        assert_eq!(
            check_status(None),
            "waiting for the customer's confirmation"
        );
        assert_eq!(
            check_status(Some(&HandoffCheck::Verified {
                confirmed: 3,
                unconfirmed: 0
            })),
            "history verified by the customer (3 messages)"
        );
        assert!(
            check_status(Some(&HandoffCheck::Incomplete {
                missing: 1,
                confirmed: 2
            }))
            .starts_with("INCOMPLETE")
        );
        assert!(
            check_status(Some(&HandoffCheck::Mismatch {
                side: Side::Customer,
                device: 1
            }))
            .starts_with("DOES NOT MATCH")
        );
    }

    #[test]
    fn commands_parse() {
        assert_eq!(parse_input("  "), Ok(Input::Empty));
        assert_eq!(parse_input("Hello"), Ok(Input::Reply("Hello".into())));
        assert_eq!(parse_input("//claim"), Ok(Input::Reply("/claim".into())));
        assert_eq!(parse_input("/claim"), Ok(Input::Claim));
        assert_eq!(parse_input("/resolve"), Ok(Input::Resolve));
        assert_eq!(parse_input("/quit"), Ok(Input::Quit));
        assert_eq!(
            parse_input("/note  VIP customer "),
            Ok(Input::Note("VIP customer".into()))
        );
        assert!(parse_input("/note").is_err());
        assert_eq!(
            parse_input("/transfer 3 wants a refund"),
            Ok(Input::Transfer {
                to: "3".into(),
                note: "wants a refund".into()
            })
        );
        assert_eq!(
            parse_input("/transfer \"Lina, support\" refund"),
            Ok(Input::Transfer {
                to: "Lina, support".into(),
                note: "refund".into()
            })
        );
        assert!(parse_input("/transfer").is_err());
        assert!(parse_input("/transfer \"Lina").is_err());
        assert!(parse_input("/frobnicate").is_err());
    }

    #[test]
    fn devices_are_found_by_id_name_or_prefix() {
        let d = shop();
        assert_eq!(find_device("3", &d), Ok(DeviceId(3)));
        assert!(find_device("9", &d).is_err());
        assert_eq!(find_device("order BOT", &d), Ok(DeviceId(2)));
        assert_eq!(find_device("lin", &d), Ok(DeviceId(3)));
        let e = find_device("L", &d).unwrap_err();
        assert!(e.contains("2 devices"), "{e}");
        assert!(find_device("Nobody", &d).is_err());
    }

    #[test]
    fn the_transcript_names_authors_and_marks_notes() {
        let customer = acct("+15550000001");
        let entry =
            |at: u64, direction, device: u32, sender: Option<u32>, text: &str| HistoryEntry {
                seq: at,
                direction,
                peer: DeviceAddress::new(customer.clone(), DeviceId(device)),
                message_id: MessageId::random(),
                timestamp: at,
                status: MessageStatus::Received,
                body: MessageBody::Text(text.into()),
                author: None,
                sender_device: sender.map(DeviceId),
            };
        let history = vec![
            entry(1_000, Direction::Incoming, 1, None, "Where is my order?"),
            entry(2_000, Direction::Outgoing, 0, Some(2), "Let me check."),
            entry(4_000, Direction::Outgoing, 0, Some(3), "Lina here."),
            entry(5_000, Direction::Incoming, 2, None, "From my laptop"),
        ];
        let notes = vec![DeskNote {
            from: DeviceId(2),
            at: 3_000,
            text: "refund?".into(),
        }];
        let shown = transcript(&history, &notes, &shop(), DeviceId(3));
        let lines: Vec<String> = shown.iter().map(Shown::line).collect();
        assert_eq!(
            lines,
            vec![
                "[00:00:01] customer: Where is my order?",
                "[00:00:02] Order bot · bot: Let me check.",
                "[00:00:03] [internal] Order bot · bot: refund?",
                "[00:00:04] Lina, support · agent (you): Lina here.",
                "[00:00:05] customer (device 2): From my laptop",
            ]
        );
    }
}
