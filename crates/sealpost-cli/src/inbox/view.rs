//! Drawing the inbox ([`Inbox`]) with ratatui: the conversation list on the left, the
//! selected conversation on the right, a status line, the input line and a help footer.

use super::model::{Group, HELP, Inbox, assignment, device_labels, handoff_status};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph};

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, inbox: &Inbox) {
    let [main, status, input, help] = Layout::vertical([
        Constraint::Min(5),
        Constraint::Length(1),
        Constraint::Length(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(32), Constraint::Percentage(68)]).areas(main);
    draw_list(frame, inbox, left);
    draw_conversation(frame, inbox, right);
    let connection = if inbox.connected {
        Span::styled("● connected ", Style::new().fg(Color::Green))
    } else {
        Span::styled("○ offline ", Style::new().fg(Color::Yellow))
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            connection,
            Span::raw(inbox.status.clone()),
        ])),
        status,
    );
    let you = inbox
        .me
        .as_ref()
        .map(|d| format!(" Reply as {} ", d.name))
        .unwrap_or_else(|| " Reply ".into());
    frame.render_widget(
        Paragraph::new(inbox.input.as_str()).block(Block::new().borders(Borders::ALL).title(you)),
        input,
    );
    let typed = u16::try_from(inbox.input.chars().count()).unwrap_or(u16::MAX);
    frame.set_cursor_position((
        input
            .x
            .saturating_add(1)
            .saturating_add(typed)
            .min(input.right().saturating_sub(2)),
        input.y.saturating_add(1),
    ));
    frame.render_widget(
        Paragraph::new(HELP).style(Style::new().add_modifier(Modifier::DIM)),
        help,
    );
}

fn draw_list(frame: &mut Frame<'_>, inbox: &Inbox, area: Rect) {
    let rows = inbox.rows();
    let mut items = Vec::new();
    let mut selected = None;
    for group in Group::ALL {
        let members: Vec<_> = rows.iter().filter(|r| r.group == group).collect();
        items.push(ListItem::new(Line::styled(
            format!("{} ({})", group.title(), members.len()),
            Style::new().add_modifier(Modifier::BOLD),
        )));
        for r in members {
            if inbox.selected.as_ref() == Some(&r.customer) {
                selected = Some(items.len());
            }
            let mut line = format!("  {}", r.customer.as_str());
            if group == Group::Others {
                line.push_str(&format!(
                    " → {}",
                    device_labels(&r.assigned_to, &inbox.devices)
                ));
            }
            items.push(ListItem::new(line));
        }
    }
    let list = List::new(items)
        .block(Block::new().borders(Borders::ALL).title(" Conversations "))
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("▶");
    let mut state = ListState::default().with_selected(selected);
    frame.render_stateful_widget(list, area, &mut state);
}

fn draw_conversation(frame: &mut Frame<'_>, inbox: &Inbox, area: Rect) {
    let Some(customer) = inbox.selected.as_ref() else {
        frame.render_widget(
            Paragraph::new("No conversation yet: new customers appear here as they write.")
                .block(Block::new().borders(Borders::ALL)),
            area,
        );
        return;
    };
    let mut header = Vec::new();
    if let Some(c) = &inbox.detail {
        header.push(Line::from(format!(
            "Assigned: {}",
            assignment(c, &inbox.devices)
        )));
        if let Some(h) = &c.handoff {
            let status = handoff_status(h);
            let color = if status.starts_with("history verified") {
                Color::Green
            } else if status.starts_with("waiting") {
                Color::Yellow
            } else {
                Color::Red
            };
            header.push(Line::from(vec![
                Span::raw(format!(
                    "Handoff from {} ({} messages): ",
                    device_labels(&[h.from], &inbox.devices),
                    h.messages
                )),
                Span::styled(status, Style::new().fg(color).add_modifier(Modifier::BOLD)),
            ]));
            if !h.note.is_empty() {
                header.push(Line::from(format!(
                    "Handoff note: {}",
                    crate::output::sanitize(&h.note)
                )));
            }
        }
    }
    header.push(Line::from(
        "─".repeat(usize::from(area.width.saturating_sub(2))),
    ));
    let block = Block::new()
        .borders(Borders::ALL)
        .title(format!(" {} ", customer.as_str()));
    let inner = block.inner(area);
    let width = usize::from(inner.width.max(1));
    let room = usize::from(inner.height).saturating_sub(header.len());
    // Wrapped here, so that the newest lines are the ones kept at the bottom.
    let mut body: Vec<Line<'static>> = Vec::new();
    for shown in &inbox.transcript {
        let style = if shown.internal {
            Style::new()
                .fg(Color::Magenta)
                .add_modifier(Modifier::ITALIC)
        } else {
            Style::new()
        };
        for piece in wrap(&shown.line(), width) {
            body.push(Line::styled(piece, style));
        }
    }
    let skip = body.len().saturating_sub(room);
    header.extend(body.into_iter().skip(skip));
    frame.render_widget(Paragraph::new(header).block(block), area);
}

/// `text` cut into lines of at most `width` characters (every line of it).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let chars: Vec<char> = line.chars().collect();
        if chars.is_empty() {
            out.push(String::new());
        }
        for chunk in chars.chunks(width.max(1)) {
            out.push(chunk.iter().collect());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn wrapping_keeps_every_character() {
        assert_eq!(super::wrap("abcdef\ngh", 4), vec!["abcd", "ef", "gh"]);
        assert_eq!(super::wrap("", 4), Vec::<String>::new());
    }
}
