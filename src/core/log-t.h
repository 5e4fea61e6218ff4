/* SPDX-License-Identifier: MIT */
/* Error log levels. */
#ifndef PT_LOG_T_H
#define PT_LOG_T_H

enum pt_log_level {
    PT_LOG_EMERG = 0,
    PT_LOG_CRIT,
    PT_LOG_ERROR,
    PT_LOG_WARN,
    PT_LOG_NOTICE,
    PT_LOG_INFO,
    PT_LOG_DEBUG,
};

#endif
