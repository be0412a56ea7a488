//! Requests outside any dialog that the SBC relays without a call (MESSAGE, RFC 3428).

use super::*;

impl B2bua {
    /// Relays a request outside any dialog (MESSAGE, RFC 3428) to the other side: a new
    /// Call-ID and tags there, the body as it is, and the final response mapped back. No call
    /// or dialog is created; the two transactions are the whole state.
    pub(super) fn relay_standalone(
        &mut self,
        now: Instant,
        peer: Peer,
        key: ServerKey,
        msg: Message,
        media: &mut MediaTable,
    ) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        let (content_type, body) = match body::classify(&msg, &method) {
            Ok(body::Body::Other { content_type, body }) => (Some(content_type), body.into_owned()),
            Ok(_) => (None, Vec::new()),
            Err(r) => {
                self.refuse_new_body(now, peer, key, msg, r);
                return;
            }
        };
        let Some(user) = request_user(&msg) else {
            self.reject(now, peer, key, msg, Refusal::NotFound);
            return;
        };
        let to_side = peer.side.other();
        let Some((target, trunk)) = self.standalone_target(&peer, user) else {
            self.events.push_back(Event::NoRoute);
            self.reject(now, peer, key, msg, Refusal::NotFound);
            return;
        };
        let local = self.trunk_local(to_side, trunk);
        let from_user = match msg.from().uri {
            crate::sip::Uri::Sip(u) => u.user.unwrap_or("anonymous").to_owned(),
            crate::sip::Uri::Tel(t) => t.raw.trim_start_matches("tel:").to_owned(),
            crate::sip::Uri::Other(_) => "anonymous".to_owned(),
        };
        let target_hp = msg::hostport(target.addr);
        let ruri = format!("sip:{user}@{target_hp}");
        let from = format!(
            "<sip:{from_user}@{}>;tag={}",
            msg::host(local.addr),
            self.rng.token()
        );
        let to = format!("<sip:{user}@{target_hp}>");
        let call_id = format!("{}@{}", self.rng.token(), msg::host(local.addr));
        let branch = self.rng.branch();
        let req = msg::request(
            &RequestSpec {
                method: &method,
                ruri: &ruri,
                local,
                branch: &branch,
                max_forwards: msg.max_forwards().map_or(70, forwarded_max_forwards),
                routes: &[],
                from: &from,
                to: &to,
                call_id: &call_id,
                cseq: 1,
                contact: false,
                user_agent: &self.cfg.user_agent,
                content_type: content_type.as_deref(),
                body: &body,
                extra: &[],
                shaping: None,
            },
            Some(msg.headers()),
            &self.cfg.pass_headers,
            &mut self.buf,
        );
        let tag = self.rng.token();
        let bound = self.trunk_bound(to_side, trunk);
        let tx = NonInviteServer::new(peer.transport.is_reliable(), self.cfg.timers);
        let key = self.tx.insert_server(ServerEntry {
            key,
            tx: STx::NonInvite(tx),
            peer,
            request: KeptRequest::new(msg),
            call: None,
            to_tag: Some(tag),
            relay: None,
            merged: None,
        });
        let to_peer = Peer {
            side: to_side,
            transport: target.transport,
            addr: target.addr,
            conn: None,
            local: bound,
        };
        // No call owns this relay: the two transactions are the whole state.
        let sent = self.send_client(
            now,
            Outgoing {
                bytes: req,
                peer: to_peer,
                call: None,
                side: to_side,
                purpose: Purpose::Relay { server: key },
            },
            media,
        );
        if let Some(ck) = sent
            && let Some(e) = self.tx.server_mut(key)
        {
            e.relay = Some(ck);
        }
    }
}
