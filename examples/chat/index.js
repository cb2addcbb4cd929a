// The socket.io chat example: `PORT=3001 NODE_NUMBER=1 node index.js`.
// Several instances run behind wsgate; the page title tells which one served you.
'use strict';
const http = require('http');
const path = require('path');
const express = require('express');
const { Server } = require('socket.io');

const port = Number(process.env.PORT || 3000);
const host = process.env.HOST || '127.0.0.1';
const instance = process.env.NODE_NUMBER || '0';

const app = express();
app.set('view engine', 'ejs');
app.set('views', path.join(__dirname, 'views'));

app.get('/', (req, res) => res.render('index', { instance }));

// Shows what the gateway forwarded (X-Forwarded-*, Host) and who connected to us.
app.get('/whoami', (req, res) =>
  res.json({ instance, headers: req.headers, remote: req.socket.remoteAddress }));

const server = http.createServer(app);
const io = new Server(server);

io.on('connection', (socket) => {
  socket.on('chat message', (msg) => io.emit('chat message', msg));
});

server.listen(port, host, () => console.log(`instance #${instance} listening on ${host}:${port}`));

const stop = () => { io.close(); server.close(() => process.exit(0)); setTimeout(() => process.exit(0), 500).unref(); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
