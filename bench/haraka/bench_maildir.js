// bench_maildir: a Haraka queue plugin that stores each message in one Maildir, durably.
//
// The message is written to tmp/, the file is fsynced, renamed into new/ and new/ is fsynced
// before the 250 reply, so Haraka's acknowledgement is as durable as that of the other servers
// in the MailMax SMTP benchmark. A failure answers 451 and leaves nothing in new/.
//
// Configuration: config/bench_maildir.ini, [main] maildir = /absolute/path/to/Maildir

'use strict'

const fsp = require('node:fs/promises')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const HOSTNAME = os.hostname().replace(/[/:]/g, '_')
let serial = 0

exports.register = function () {
    const cfg = this.config.get('bench_maildir.ini')
    const maildir = cfg.main && cfg.main.maildir
    if (!maildir || !path.isAbsolute(maildir)) {
        throw new Error('bench_maildir.ini: [main] maildir must be an absolute path')
    }
    this.maildir = maildir
    for (const sub of ['tmp', 'new', 'cur']) {
        fs.mkdirSync(path.join(maildir, sub), { recursive: true, mode: 0o700 })
    }
    this.register_hook('queue', 'store')
}

// A Maildir file name unique within this process (one Haraka process writes the Maildir).
function unique_name() {
    serial += 1
    return `${Date.now()}.P${process.pid}Q${serial}.${HOSTNAME}`
}

async function sync_path(dir) {
    const handle = await fsp.open(dir, 'r')
    try {
        await handle.sync()
    } finally {
        await handle.close()
    }
}

exports.write_message = async function (data) {
    const name = unique_name()
    const tmp_path = path.join(this.maildir, 'tmp', name)
    const new_dir = path.join(this.maildir, 'new')
    const handle = await fsp.open(tmp_path, 'wx', 0o600)
    try {
        try {
            await handle.writeFile(data)
            await handle.sync()
        } finally {
            await handle.close()
        }
        await fsp.rename(tmp_path, path.join(new_dir, name))
    } catch (err) {
        await fsp.rm(tmp_path, { force: true })
        throw err
    }
    try {
        await sync_path(new_dir)
    } catch (err) {
        // not durable, so not delivered: the client gets 451 and will send it again
        await fsp.rm(path.join(new_dir, name), { force: true })
        throw err
    }
    return name
}

exports.store = function (next, connection) {
    const txn = connection.transaction
    txn.message_stream.get_data({ line_endings: '\n' }, (data) => {
        this.write_message(data).then(
            (name) => next(OK, `Queued as ${name}`),
            (err) => {
                connection.logerror(this, `could not store the message: ${err.message}`)
                next(DENYSOFT, 'Local error writing the message')
            },
        )
    })
}
