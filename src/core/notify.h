/* SPDX-License-Identifier: MIT */
/* Service-manager notifications: systemd's sd_notify protocol (sd_notify(3)) spoken directly,
 * one datagram per state change to the socket named by $NOTIFY_SOCKET, without libsystemd.
 *
 * Every function here is a no-op returning PT_DECLINED when $NOTIFY_SOCKET is unset or empty
 * (portico not started by systemd with Type=notify), so callers call them unconditionally.
 * A failure to send is logged once per call at `warn` and returned as PT_ERR; it never stops
 * portico (systemd then times the state change out and says so in the journal).
 *
 * Thread: any thread (each call reads the environment, which portico never changes, and
 * uses its own socket), but the states are process-wide, so in practice the main thread
 * calls them. Not re-entered by anything. */
#ifndef PT_NOTIFY_H
#define PT_NOTIFY_H

#include "core/common-t.h"

/* Sends STATE, newline-separated VAR=VALUE assignments, e.g. "READY=1\nSTATUS=serving", as
 * one datagram. Returns PT_OK when sent, PT_DECLINED when there is no $NOTIFY_SOCKET, PT_ERR
 * (with err filled) when the socket cannot be used. Does not log. For the messages that have
 * no helper below, such as "MAINPID=N" for a binary upgrade. */
int pt_notify_send(const char *state, struct pt_err *err);

/* "READY=1" plus "STATUS=<status>" when status is not NULL. Call once the listeners are open
 * and the workers run (start-up), and again when a reload has ended, whether the new
 * configuration was taken or refused: systemd holds the unit in "reloading" until it gets
 * READY=1 after a RELOADING=1. */
int pt_notify_ready(const char *status);

/* "RELOADING=1", "MONOTONIC_USEC=<CLOCK_MONOTONIC now>" and "STATUS=reloading configuration":
 * call when a reload begins (SIGHUP, `portico -s reload`), before the new configuration is
 * read; end the reload with pt_notify_ready(). MONOTONIC_USEC is what systemd 253's
 * Type=notify-reload matches against its reload request; older managers ignore it. */
int pt_notify_reloading(void);

/* "STOPPING=1" and "STATUS=stopping": call when a graceful stop begins, before the drain,
 * so that systemd knows the exit that follows is intended. */
int pt_notify_stopping(void);

/* "STATUS=<status>": a free-form one-line status shown by `systemctl status`. */
int pt_notify_status(const char *status);

#endif
