"""Clustered domains: several MailMax nodes sharing one directory.

Each user of a ``clustered`` domain has a home node (the user's own, else the domain's). Mail
accepted on any node for a user homed elsewhere waits in that node's queue until the home
node's node-to-node SMTP listener takes it (:mod:`.peer`); POP3 and IMAP log-ins are proxied
to the home node or referred there (:mod:`.proxy`); ``mailmax user move`` moves a mailbox from
node to node (:mod:`.move`). What this node knows of the cluster is :class:`.nodes.Cluster`.
"""
