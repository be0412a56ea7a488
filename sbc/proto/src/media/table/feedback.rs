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
    /// cannot start one). Its peers were told its ports when the verb that opened it
    /// returned, so it fails as a bind of those ports does: the call layer is told to end the
    /// call ([`MediaEvent::Failed`]), since its media would go nowhere.
    pub fn handle_unrelayable(&mut self, stream: StreamKey, why: &str) -> MediaError {
        self.stream_lost(stream);
        MediaError::Unavailable(why.to_owned())
    }

    /// `stream`'s `leg` ports could not be bound (another program holds one). The endpoints
    /// a verb returns are final (the call layer writes them into the SDP before the commands
    /// run), so the stream cannot move to another pair: the call layer is told to end the
    /// call ([`MediaEvent::Failed`]), since media to those ports goes nowhere. The caller of an
    /// adopted session, which has no call layer, releases it on the error returned. Warm
    /// pairs ([`MediaTable::set_warm_pairs`]) keep this off the call path: a stream that takes
    /// one takes sockets already bound.
    pub fn handle_bind_failed(&mut self, stream: StreamKey, leg: Side) -> Result<(), MediaError> {
        let Some(port) = self
            .sessions
            .get(&stream.session)
            .and_then(|s| s.streams.get(stream.index))
            .map(|st| st.bound()[leg.index()].port())
        else {
            return Ok(());
        };
        self.stream_lost(stream);
        Err(MediaError::Unavailable(format!(
            "relay port {port} the peers were told cannot be bound"
        )))
    }

    /// Tells the call layer that `stream`'s session lost its media (unless the session is
    /// adopted: nobody to tell, its caller releases it).
    fn stream_lost(&mut self, stream: StreamKey) {
        if self
            .sessions
            .get(&stream.session)
            .is_some_and(|s| !s.adopted)
        {
            push_event(&mut self.events, MediaEvent::Failed(stream.session));
        }
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
