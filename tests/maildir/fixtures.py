"""Delivery-status notifications as real mail servers write them (addresses changed), and the
moment the Maildir tests' clock stands at."""
from datetime import datetime, timezone

START = datetime(2024, 6, 4, 9, 30, tzinfo=timezone.utc)

POSTFIX_BOUNCE = """\
Return-Path: <>
Delivered-To: rep@example.com
Received: by mx.example.com (Postfix)
\tid 4VxYz1234; Tue,  4 Jun 2024 09:31:02 +0000 (UTC)
Date: Tue,  4 Jun 2024 09:31:02 +0000 (UTC)
From: MAILER-DAEMON@mx.example.com (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: rep@example.com
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4VxYz1234.1717493462/mx.example.com"
Content-Transfer-Encoding: 8bit
Message-Id: <20240604093102.4VxYz1234@mx.example.com>

This is a MIME-encapsulated message.

--4VxYz1234.1717493462/mx.example.com
Content-Description: Notification
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

This is the mail system at host mx.example.com.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

<ada@prospect.example>: host mx.prospect.example[203.0.113.7] said: 550 5.1.1
    <ada@prospect.example>: Recipient address rejected: User unknown in virtual
    mailbox table (in reply to RCPT TO command)

--4VxYz1234.1717493462/mx.example.com
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com
X-Postfix-Queue-ID: 4VxYz1234
X-Postfix-Sender: rfc822; rep@example.com
Arrival-Date: Tue,  4 Jun 2024 09:31:01 +0000 (UTC)

Final-Recipient: rfc822; ada@prospect.example
Original-Recipient: rfc822;ada@prospect.example
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.prospect.example
Diagnostic-Code: smtp; 550 5.1.1 <ada@prospect.example>: Recipient address
    rejected: User unknown in virtual mailbox table

--4VxYz1234.1717493462/mx.example.com
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers
Content-Transfer-Encoding: 8bit

Return-Path: <rep@example.com>
From: Rita Rep <rep@example.com>
To: Ada Lovelace <ada@prospect.example>
Subject: Quick question
Date: Tue, 04 Jun 2024 09:30:58 +0000
Message-ID: <step1.7f3a@cadence.test>
List-Unsubscribe: <https://cadence.test/u/abc>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="===============1=="

--4VxYz1234.1717493462/mx.example.com--
"""

# A second recipient was delayed, the first failed; the original comes back whole as
# message/rfc822 and is itself a reply in a thread.
RFC822_BOUNCE_WITH_DELAY = """\
Return-Path: <>
From: Mail Delivery Subsystem <mailer-daemon@mail.example.net>
To: rep@example.com
Subject: Delivery Status Notification (Failure)
Date: Wed, 05 Jun 2024 10:00:00 -0700
Message-ID: <dsn-42@mail.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; boundary="b1"; report-type=delivery-status

--b1
Content-Type: text/plain; charset="UTF-8"

Your message wasn't delivered to grace@prospect.example because the address couldn't be found.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.example.net
Arrival-Date: Wed, 05 Jun 2024 09:59:58 -0700

Final-Recipient: rfc822; charles@prospect.example
Action: delayed
Status: 4.4.7
Will-Retry-Until: Thu, 06 Jun 2024 09:59:58 -0700

Final-Recipient: rfc822; grace@prospect.example
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist.

--b1
Content-Type: message/rfc822

From: Rita Rep <rep@example.com>
To: grace@prospect.example
Subject: Re: Quick question
Date: Wed, 05 Jun 2024 09:59:57 -0700
Message-ID: <step3.99@cadence.test>
In-Reply-To: <step2.11@cadence.test>
References: <step1.10@cadence.test> <step2.11@cadence.test>
Content-Type: text/plain; charset="UTF-8"

Bumping this.

--b1--
"""

DELAY_ONLY = """\
From: MAILER-DAEMON@mx.example.com (Mail Delivery System)
To: rep@example.com
Subject: Delayed Mail (still being retried)
Date: Tue, 04 Jun 2024 13:31:02 +0000
Message-Id: <delay-1@mx.example.com>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="d1"

--d1
Content-Type: text/plain

This is only a warning; nothing needs to be done.

--d1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com

Final-Recipient: rfc822; ada@prospect.example
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.prospect.example[203.0.113.7]:25: Connection timed out

--d1
Content-Type: text/rfc822-headers

Message-ID: <step1.7f3a@cadence.test>

--d1--
"""

# The rep forwards a bounce to a colleague as an attachment; that is no bounce of ours.
FORWARDED_BOUNCE = (
    "From: Rita Rep <rep@example.com>\n"
    "To: ops@example.com\n"
    "Subject: Fwd: Undelivered Mail Returned to Sender\n"
    "Date: Tue, 04 Jun 2024 12:00:00 +0000\n"
    "Message-ID: <fwd-1@example.com>\n"
    "MIME-Version: 1.0\n"
    'Content-Type: multipart/mixed; boundary="f1"\n'
    "\n"
    "--f1\n"
    "Content-Type: text/plain\n"
    "\n"
    "Can you look at this?\n"
    "\n"
    "--f1\n"
    "Content-Type: message/rfc822\n"
    "\n"
    + POSTFIX_BOUNCE +
    "\n--f1--\n"
)
