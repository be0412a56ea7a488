//! Feedback from executed commands: busy ports, full maps, and new streams that could not be
//! opened.

use super::*;

impl MediaTable {
    /// A mapping could not be installed (map full): the stream stays in userspace. Forgets the
    /// mapping and asks to remove whatever the kernel may hold under its key.
    /// A socketless stream cannot do without its mappings: it is bound and relayed in
    /// userspace from then on.
    pub fn handle_install_failed(&mut self, ingress: SocketAddr) {
        for (id, s) in &mut self.sessions {
            for (index, st) in s.streams.iter_mut().enumerate() {
                let Some(i) = st.installed.iter().position(|m| m.ingress == ingress) else {
                    continue;
                };
                let Some(m) = st.installed.remove(i) else {
                    continue;
                };
                self.slots.give(m.slot);
                index_kernel_legs(
                    &mut self.kernel_ports,
                    StreamKey {
                        session: *id,
                        index,
                    },
                    st,
                );
                self.commands.push_back(MediaCommand::Remove {
                    ingress,
                    policy: st.policies,
                });
                if st.kernel {
                    let stream = StreamKey {
                        session: *id,
                        index,
                    };
                    leave_kernel(&mut self.commands, stream, st);
                }
                return;
            }
        }
    }

    /// `stream` is bound but nothing can relay it (the executor has no relay thread and
    /// cannot start one). A stream whose peers were already told its ports (socketless until
    /// a verb made it need sockets, restored) fails as a bind of those ports does: the call
    /// layer is told to end the call ([`MediaEvent::Failed`]), since its media would go
    /// nowhere. For a new stream the verb that allocated it fails with the error returned.
    pub fn handle_unrelayable(&mut self, stream: StreamKey, why: &str) -> MediaError {
        if let Some(s) = self.sessions.get(&stream.session)
            && !s.adopted
            && s.streams.get(stream.index).is_some_and(|st| st.fixed_ports)
        {
            push_event(&mut self.events, MediaEvent::Failed(stream.session));
        }
        MediaError::Unavailable(why.to_owned())
    }

    /// `stream`'s `leg` ports could not be bound (another program holds one): tries another
    /// pair (the failed one goes to the back of its pool; the new one may be on another of the
    /// side's relay addresses, and the SDP then names that one). Gives up after a few pairs; the
    /// caller then releases the session (or drops the new streams of a re-offer,
    /// [`MediaTable::drop_streams_from`]). A stream whose peers were already told its ports
    /// (socketless until now, restored, adopted) cannot move: it fails at once, and the call
    /// layer is told to end the call ([`MediaEvent::Failed`]), since media to those ports
    /// would go nowhere.
    pub fn handle_bind_failed(&mut self, stream: StreamKey, leg: Side) -> Result<(), MediaError> {
        let Some(s) = self.sessions.get_mut(&stream.session) else {
            return Ok(());
        };
        let Some(st) = s.streams.get_mut(stream.index) else {
            return Ok(());
        };
        let i = leg.index();
        if st.fixed_ports {
            let port = st.ports()[i];
            // An adopted session has no call layer to tell: the caller releases it.
            if !s.adopted {
                push_event(&mut self.events, MediaEvent::Failed(stream.session));
            }
            return Err(MediaError::Unavailable(format!(
                "relay port {port} the peers were told cannot be bound"
            )));
        }
        let old = st.bound()[i];
        st.bind_attempts[i] += 1;
        if st.bind_attempts[i] >= BIND_ATTEMPTS {
            return Err(MediaError::Unavailable(format!(
                "no bindable relay port pair on {} after {BIND_ATTEMPTS} attempts",
                old.ip()
            )));
        }
        // A warm pair if there is one: its bind cannot fail again.
        let Some((bind, port)) = self.draw(leg, true) else {
            return Err(MediaError::PortsExhausted(leg));
        };
        let advertised = self.settings.side(leg).advertised(bind);
        let Some(st) = self
            .sessions
            .get_mut(&stream.session)
            .and_then(|s| s.streams.get_mut(stream.index))
        else {
            let _ = self.pools.free(bind, port);
            return Ok(());
        };
        let endpoint = match leg {
            Side::Inside => &mut st.relay.inside,
            Side::Outside => &mut st.relay.outside,
        };
        let mux = endpoint.rtcp_port == endpoint.rtp_port;
        endpoint.addr = advertised;
        endpoint.rtp_port = port;
        endpoint.rtcp_port = if mux { port } else { port + 1 };
        st.binds[i] = bind;
        // Back of the queue: it may be free again later. Not ours otherwise: a bug, ignored.
        let _ = self.pools.free(old.ip(), old.port());
        self.commands.push_back(MediaCommand::Bind {
            stream,
            leg,
            addr: SocketAddr::new(bind, port),
        });
        Ok(())
    }

    /// Drops the streams of `id` from `index` on (new streams of a re-offer that could not be
    /// opened): frees their ports and asks to close them.
    pub fn drop_streams_from(&mut self, id: SessionId, index: usize) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if index >= s.streams.len() {
            return;
        }
        let gone: Vec<Stream> = s.streams.drain(index..).collect();
        let ports = 2 * gone.iter().filter(|st| st.enabled()).count();
        s.quota_ports = s.quota_ports.saturating_sub(ports);
        let peers = s.peers.clone();
        self.give_quota(&peers, ports);
        for (i, st) in gone.iter().enumerate() {
            self.close_stream(
                StreamKey {
                    session: id,
                    index: index + i,
                },
                st,
            );
        }
    }
}
