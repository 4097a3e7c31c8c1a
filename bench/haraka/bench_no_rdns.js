// bench_no_rdns: answer Haraka's reverse DNS lookup of the client without asking DNS.
//
// The MailMax SMTP benchmark runs on loopback with no resolver involved (Postfix runs with
// smtpd_peername_lookup = no); the client's name is recorded as "unknown".

'use strict'

exports.hook_lookup_rdns = function (next) {
    next(OK, 'unknown')
}
