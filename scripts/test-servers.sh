#!/usr/bin/env bash
# The servers the remote-backend tests run against, on 127.0.0.1 only:
#   s3    moto_server (PyPI `moto[server]`, in a venv) with the bucket `cbsnap-test`
#   sftp  Debian's sshd on a high port, with a host key and a client key made here
#
#   scripts/test-servers.sh start          start both; prints the environment to export
#   scripts/test-servers.sh stop|start s3  stop or (re)start one (the tests do this)
#   scripts/test-servers.sh env            print the environment again
#   scripts/test-servers.sh down           stop both
#
# State (keys, configs, pid files, ports, logs) lives in $CBSNAP_TEST_SERVERS
# (default /tmp/cbsnap-test-servers). The sftp server is reached through the host alias
# `cbsnap-test-sftp`, defined in $CBSNAP_TEST_SERVERS/ssh_config and included (once,
# and only that alias) from ~/.ssh/config, so that `ssh` finds the key and the
# known_hosts entry exactly as it would for a user's own server. Moto keeps its data
# in memory: a restart empties the bucket (and creates it again).
set -euo pipefail

dir=${CBSNAP_TEST_SERVERS:-/tmp/cbsnap-test-servers}
venv=${CBSNAP_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/cbsnap/moto-venv}
bucket=cbsnap-test
alias=cbsnap-test-sftp
mkdir -p "$dir"
chmod 700 "$dir"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The port of a server, chosen once and kept, so that a restart listens where the
# tests already point.
port_of() {
  local f="$dir/$1.port"
  [ -s "$f" ] || free_port >"$f"
  cat "$f"
}

wait_port() {
  local port=$1 what=$2
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "cbsnap: $what did not start listening on 127.0.0.1:$port; see $dir/$what.log" >&2
  return 1
}

running() {
  local pidfile="$dir/$1.pid"
  [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

start_s3() {
  running s3 && return 0
  if [ ! -x "$venv/bin/moto_server" ]; then
    echo "cbsnap: moto is not installed in $venv; run scripts/deps.sh --test" >&2
    return 1
  fi
  local port
  port=$(port_of s3)
  setsid "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >>"$dir/s3.log" 2>&1 </dev/null &
  echo $! >"$dir/s3.pid"
  wait_port "$port" s3
  # moto accepts unsigned requests: create the bucket.
  python3 - "$port" "$bucket" <<'EOF'
import sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/{sys.argv[2]}", method="PUT")
urllib.request.urlopen(req).read()
EOF
}

start_sftp() {
  running sftp && return 0
  local port sshd
  port=$(port_of sftp)
  sshd=$(command -v sshd || echo /usr/sbin/sshd)
  [ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
  [ -f "$dir/client_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/client_key"
  cp "$dir/client_key.pub" "$dir/authorized_keys"
  # Known by the alias (HostKeyAlias), so that the tests may also reach the server
  # through a proxy on another port.
  echo "$alias $(cut -d' ' -f1,2 "$dir/host_key.pub")" >"$dir/known_hosts"
  cat >"$dir/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_key
PidFile $dir/sftp.pid
AuthorizedKeysFile $dir/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
EOF
  cat >"$dir/ssh_config" <<EOF
Host $alias
  HostName 127.0.0.1
  Port $port
  User $(id -un)
  IdentityFile $dir/client_key
  IdentitiesOnly yes
  UserKnownHostsFile $dir/known_hosts
  HostKeyAlias $alias
  StrictHostKeyChecking yes
EOF
  mkdir -p "$HOME/.ssh" /run/sshd
  chmod 700 "$HOME/.ssh"
  local include="Include $dir/ssh_config"
  if ! grep -qxF "$include" "$HOME/.ssh/config" 2>/dev/null; then
    # First in the file: an Include after a Host line would only apply to that host.
    { echo "$include"; cat "$HOME/.ssh/config" 2>/dev/null || true; } >"$dir/ssh_config.user"
    mv "$dir/ssh_config.user" "$HOME/.ssh/config"
    chmod 600 "$HOME/.ssh/config"
  fi
  rm -f "$dir/sftp.pid"
  "$sshd" -f "$dir/sshd_config" -E "$dir/sftp.log"
  for _ in $(seq 1 50); do [ -s "$dir/sftp.pid" ] && break; sleep 0.1; done
  wait_port "$port" sftp
}

stop() {
  local what=$1 pidfile="$dir/$1.pid"
  if running "$what"; then
    local pid
    pid=$(cat "$pidfile")
    if [ "$what" = sftp ]; then
      # The listener and every session it forked: a stopped server drops its clients.
      pkill -TERM -P "$pid" 2>/dev/null || true
      kill -TERM "$pid" 2>/dev/null || true
    else
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    fi
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
}

print_env() {
  cat <<EOF
export CBSNAP_TEST_SERVERS=$dir
export CBSNAP_TEST_S3=s3://$bucket/test
export AWS_ENDPOINT_URL=http://127.0.0.1:$(port_of s3)
export AWS_ACCESS_KEY_ID=cbsnap-test
export AWS_SECRET_ACCESS_KEY=cbsnap-test
export AWS_REGION=us-east-1
export CBSNAP_TEST_SFTP=sftp://$alias$dir/sftp-root
EOF
}

case "${1:-}" in
  start)
    case "${2:-all}" in
      s3) start_s3 ;;
      sftp) start_sftp ;;
      all) start_s3; start_sftp; print_env ;;
      *) echo "usage: $0 start [s3|sftp]" >&2; exit 2 ;;
    esac ;;
  stop)
    case "${2:-}" in
      s3|sftp) stop "$2" ;;
      *) echo "usage: $0 stop s3|sftp" >&2; exit 2 ;;
    esac ;;
  down) stop s3; stop sftp ;;
  env) print_env ;;
  *) echo "usage: $0 start [s3|sftp] | stop s3|sftp | env | down" >&2; exit 2 ;;
esac
