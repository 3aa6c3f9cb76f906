"""Alert e-mails: one message per alert change, in Japanese and English, over SMTP.

`send_due(engine, smtp, now)` takes the pending notifications whose time has come, sends
each, and records the outcome: sent, or tried again later (30 s, 2 min, 10 min, 1 h, 6 h),
and dead after the last try (an `alert_notification_dead` event says so). A send is a
blocking smtplib call; the server runs this in a worker thread.
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from sqlalchemy import Engine, and_, or_, select, update

from kenshin.jst import JST

from ..retry import after_failure
from . import tables as t

__all__ = ["BACKOFF", "SmtpConfig", "compose", "send_due"]

log = logging.getLogger(__name__)

BACKOFF = (
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(hours=1),
    timedelta(hours=6),
)

_RULE_JA = {
    "no_data": "データ欠測",
    "meter_stuck": "メーター停止の疑い",
    "impossible_value": "異常値",
    "pv_zero_midday": "日中の発電ゼロ",
    "outside_band": "予測範囲外の消費",
    "queue_growing": "送信待ちの増加",
}
_CHANGE = {"opened": ("発生", "opened"), "resolved": ("復旧", "resolved")}


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    sender: str = "kenshin@localhost"
    timeout_s: float = 10.0


def compose(alert, change: str, to: str, sender: str) -> EmailMessage:
    ja_change, en_change = _CHANGE[change]
    rule_ja = _RULE_JA.get(alert.rule, alert.rule)
    message = EmailMessage()
    message["Subject"] = (
        f"[Kenshin] {rule_ja} {ja_change} / {alert.rule} {en_change}: {alert.subject}"
    )
    message["From"] = sender
    message["To"] = to
    message["Date"] = format_datetime(datetime.now(JST))
    message["Message-ID"] = make_msgid(domain="kenshin")
    opened = alert.opened_at.astimezone(JST).strftime("%Y年%m月%d日 %H:%M")
    message.set_content(
        f"警報 {alert.id}: {rule_ja}（{alert.subject}）が{ja_change}しました。\n"
        f"発生時刻: {opened}\n重要度: {alert.severity}\n詳細: {alert.detail}\n\n"
        f"Alert {alert.id}: {alert.rule} on {alert.subject} {en_change}.\n"
        f"Opened: {alert.opened_at.astimezone(JST).isoformat()}\n"
        f"Severity: {alert.severity}\nDetail: {alert.detail}\n",
        charset="utf-8",
    )
    return message


def _send(config: SmtpConfig, message: EmailMessage) -> None:
    with smtplib.SMTP(config.host, config.port, timeout=config.timeout_s) as smtp:
        if config.starttls:
            smtp.starttls()
        if config.username:
            smtp.login(config.username, config.password or "")
        smtp.send_message(message)


def send_due(engine: Engine, config: SmtpConfig, now: datetime, limit: int = 50) -> int:
    """Send what is due; returns how many were sent."""
    n = t.alert_notifications.c
    with engine.connect() as conn:
        due = conn.execute(
            select(t.alert_notifications, t.alerts)
            .join(t.alerts, t.alerts.c.id == n.alert_id)
            .where(
                and_(
                    n.state == "pending",
                    n.channel == "email",
                    or_(n.next_attempt_at.is_(None), n.next_attempt_at <= now),
                )
            )
            .order_by(n.id)
            .limit(limit)
        ).all()
    sent = 0
    for row in due:
        notification_id = row[0]
        alert = row._mapping
        alert_row = _AlertView(
            id=alert[t.alerts.c.id],
            rule=alert[t.alerts.c.rule],
            subject=alert[t.alerts.c.subject],
            severity=alert[t.alerts.c.severity],
            detail=alert[t.alerts.c.detail],
            opened_at=alert[t.alerts.c.opened_at],
        )
        attempts = alert[n.attempts] + 1
        try:
            _send(config, compose(alert_row, alert[n.change], alert[n.target], config.sender))
        except (OSError, smtplib.SMTPException) as err:
            state, next_attempt = after_failure(attempts, now, BACKOFF)
            dead = state == "dead"
            log.warning("alert e-mail %s failed (try %d): %s", notification_id, attempts, err)
            values = {
                "attempts": attempts,
                "last_error": f"{type(err).__name__}: {err}"[:500],
                "state": state,
                "next_attempt_at": next_attempt,
            }
            with engine.begin() as conn:
                conn.execute(
                    update(t.alert_notifications).where(n.id == notification_id).values(**values)
                )
                if dead:
                    from ..events import record_event

                    record_event(
                        conn,
                        tenant_id=alert[n.tenant_id],
                        code="alert_notification_dead",
                        severity="error",
                        detail={"notification_id": notification_id, "error": values["last_error"]},
                        at=now,
                    )
            continue
        with engine.begin() as conn:
            conn.execute(
                update(t.alert_notifications)
                .where(n.id == notification_id)
                .values(state="sent", sent_at=now, attempts=attempts, last_error=None)
            )
        sent += 1
    return sent


@dataclass(frozen=True)
class _AlertView:
    id: int
    rule: str
    subject: str
    severity: str
    detail: object
    opened_at: datetime
