"""The far end of the web-client tests: a slixmpp account on a TCP (STARTTLS) connection that
answers every chat message with "echo: <body>". A body starting with "later:" is answered
after two seconds, so that the answer arrives while the web client is away.

Usage: echo_bot.py JID PASSWORD PORT CA_FILE  (prints READY once online)
"""

import asyncio
import sys

import slixmpp


class EchoBot(slixmpp.ClientXMPP):
    def __init__(self, jid, password, port, ca):
        super().__init__(jid, password)
        self.ca_certs = ca
        self.enable_starttls = True
        self.enable_direct_tls = False
        self.enable_plaintext = False
        self.use_ipv6 = False
        self.port = port
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)

    async def on_start(self, _event):
        self.send_presence()
        await self.get_roster()
        print("READY", flush=True)

    async def on_message(self, msg):
        if msg["type"] not in ("chat", "normal") or not msg["body"]:
            return
        body = msg["body"]
        if body.startswith("later:"):
            await asyncio.sleep(2)
        print(f"got a message from {msg['from']}", flush=True)
        self.send_message(mto=msg["from"], mbody=f"echo: {body}", mtype="chat")


def main():
    jid, password, port, ca = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    bot = EchoBot(jid, password, port, ca)
    bot.connect(host="127.0.0.1", port=port)
    asyncio.get_event_loop().run_forever()


if __name__ == "__main__":
    main()
