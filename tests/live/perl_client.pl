#!/usr/bin/perl
# One WebSocket conversation driven by Perl's Protocol::WebSocket, reported as JSON lines.
#
#   perl perl_client.pl --port N --draft DRAFT [--host H] [--path P] [--timeout S]
#
# DRAFT is one of Protocol::WebSocket's version names: draft-hixie-75,
# draft-ietf-hybi-00, draft-ietf-hybi-10, draft-ietf-hybi-17. Standard input holds
# {"messages": [text, ...]} as UTF-8 JSON. Each message is sent as one text message and
# its echo awaited before the next is sent; then the draft's closing handshake runs:
#   draft-hixie-75      half-close TCP, read to EOF (the draft has no closing handshake)
#   draft-ietf-hybi-00  send 0xFF 0x00, read the server's reply to EOF
#   draft-ietf-hybi-10  send a masked close frame with a code, read the server's close
#   draft-ietf-hybi-17  frame to EOF
#
# Every line on standard output is one JSON object with an "event" key:
#   request    the handshake request: head (text) and the bytes after it (hex)
#   handshake  the response head (text), the bytes read with it (hex), library checks
#   echo       per message: lengths and MD5s of the bytes sent and received, equal
#   close      what the server sent back after the client's close, and whether EOF came
#   done       everything completed
#   error      stage and message; the script then exits non-zero
# Protocol::WebSocket::Client is not used: its constructor does not pass "version" to
# the handshake, so it always sends an RFC 6455 request whatever draft it frames with.

use strict;
use warnings;

use Digest::MD5 ();
use Encode ();
use Getopt::Long ();
use IO::Socket::INET ();
use JSON::PP ();
use Socket qw(SHUT_WR);

use Protocol::WebSocket::Frame;
use Protocol::WebSocket::Handshake::Client;

my %opt = (host => '127.0.0.1', path => '/', timeout => 20);
Getopt::Long::GetOptions(\%opt, 'host=s', 'port=i', 'path=s', 'draft=s', 'timeout=i')
  or die "bad options\n";
die "--port and --draft are required\n" unless $opt{port} && $opt{draft};

my %KNOWN = map { $_ => 1 }
  qw(draft-hixie-75 draft-ietf-hybi-00 draft-ietf-hybi-10 draft-ietf-hybi-17);
die "unknown draft $opt{draft}\n" unless $KNOWN{$opt{draft}};

my $draft   = $opt{draft};
my $hixie   = $draft eq 'draft-hixie-75' || $draft eq 'draft-ietf-hybi-00';
my $out     = JSON::PP->new->ascii->canonical;
my $stage   = 'start';
my $CLOSE_CODE   = 1000;
my $CLOSE_REASON = 'bye from perl';

$| = 1;

sub emit { print $out->encode($_[0]), "\n" }

sub fail {
    my ($message) = @_;
    $message =~ s/\s+\z//;
    emit({event => 'error', stage => $stage, message => $message});
    exit 2;
}

$SIG{ALRM} = sub { fail("timed out after $opt{timeout}s") };
$SIG{PIPE} = 'IGNORE';
alarm $opt{timeout};

my $input = do { local $/; <STDIN> };
my $messages = eval { JSON::PP->new->utf8->decode($input)->{messages} };
fail("standard input is not {\"messages\": [...]}: $@") unless ref $messages eq 'ARRAY';

my $ok = eval { main(); 1 };
fail($@ || 'unknown error') unless $ok;
exit 0;

sub main {
    $stage = 'connect';
    my $sock = IO::Socket::INET->new(
        PeerAddr => $opt{host},
        PeerPort => $opt{port},
        Proto    => 'tcp',
        Timeout  => $opt{timeout},
    ) or die "cannot connect to $opt{host}:$opt{port}: $!\n";
    binmode $sock;

    my $leftover = handshake($sock);

    # Frames are parsed with the draft's framing; no size limit (the default is 64 KiB).
    my $reader = Protocol::WebSocket::Frame->new(version => $draft, max_payload_size => 0);
    $reader->append($leftover);

    for my $index (0 .. $#$messages) {
        $stage = "message $index";
        my $sent  = Encode::encode('UTF-8', $messages->[$index]);
        my $frame = Protocol::WebSocket::Frame->new(
            version          => $draft,
            buffer           => $sent,    # bytes: Frame would re-encode a character string
            masked           => 1,
            max_payload_size => 0,
        );
        send_all($sock, $frame->to_bytes);
        my ($opcode, $payload) = next_frame($sock, $reader);
        die "connection closed before the echo of message $index\n" unless defined $payload;
        die "server sent a close frame instead of the echo of message $index\n"
          if $opcode == 8;
        emit({
            event          => 'echo',
            index          => $index,
            opcode         => $opcode,
            sent_bytes     => length $sent,
            received_bytes => length $payload,
            sent_md5       => Digest::MD5::md5_hex($sent),
            received_md5   => Digest::MD5::md5_hex($payload),
            equal          => ($payload eq $sent ? JSON::PP::true : JSON::PP::false),
        });
    }

    $stage = 'close';
    close_connection($sock, $reader);
    close $sock;
    emit({event => 'done', ok => JSON::PP::true, messages => scalar @$messages});
}

sub handshake {
    my ($sock) = @_;
    $stage = 'handshake';
    my $url = "ws://$opt{host}:$opt{port}$opt{path}";
    my $hs  = Protocol::WebSocket::Handshake::Client->new(url => $url, version => $draft);
    my $request = $hs->to_string;
    my $cut = index($request, "\x0d\x0a\x0d\x0a") + 4;
    emit({
        event         => 'request',
        head          => substr($request, 0, $cut),
        after_head    => unpack('H*', substr($request, $cut)),
        written_bytes => length $request,
    });
    send_all($sock, $request);    # head and key3 (hybi-00) in one write

    my $raw = '';
    until ($hs->is_done) {
        my $chunk = read_some($sock);
        die "connection closed during the handshake; got: " . printable($raw) . "\n"
          unless defined $chunk;
        $raw .= $chunk;
        $hs->parse($chunk) or die 'handshake rejected by Protocol::WebSocket: '
          . ($hs->error // 'unknown') . '; got: ' . printable($raw) . "\n";
        # On completion parse() leaves the bytes after the handshake in $chunk.
        if ($hs->is_done) {
            my $end = index($raw, "\x0d\x0a\x0d\x0a") + 4;
            my $answer = substr($raw, $end, length($raw) - $end - length $chunk);
            emit({
                event      => 'handshake',
                head       => substr($raw, 0, $end),
                answer_hex => unpack('H*', $answer),
                # hybi-00 only: Protocol::WebSocket refuses a wrong MD5 answer itself.
                library_checked_answer =>
                  ($draft eq 'draft-ietf-hybi-00' ? JSON::PP::true : JSON::PP::false),
            });
            return $chunk;
        }
    }
    return '';
}

sub next_frame {
    my ($sock, $reader) = @_;
    while (1) {
        my $payload = $reader->next_bytes;
        if (defined $payload) {
            # hixie framing keeps the opcode of the frame object: 1, or 8 after 0xFF 0x00.
            return ($reader->opcode, $payload);
        }
        my $chunk = read_some($sock);
        return unless defined $chunk;
        $reader->append($chunk);
    }
}

sub close_connection {
    my ($sock, $reader) = @_;
    my %report = (event => 'close');
    if ($draft eq 'draft-hixie-75') {
        $report{kind} = 'tcp';
        shutdown($sock, SHUT_WR) or die "shutdown: $!\n";
    }
    elsif ($draft eq 'draft-ietf-hybi-00') {
        $report{kind} = 'hixie76';
        send_all($sock,
            Protocol::WebSocket::Frame->new(version => $draft, type => 'close')->to_bytes);
    }
    else {
        $report{kind} = 'frame';
        my $close = Protocol::WebSocket::Frame->new(
            version => $draft,
            type    => 'close',
            buffer  => pack('n', $CLOSE_CODE) . $CLOSE_REASON,
            masked  => 1,
        );
        send_all($sock, $close->to_bytes);
        $report{sent_code}   = $CLOSE_CODE;
        $report{sent_reason} = $CLOSE_REASON;
    }

    # Everything the server sends until it closes TCP (it closes first on every draft).
    my $rest = '';
    while (defined(my $chunk = read_some($sock))) {
        $rest .= $chunk;
    }
    $report{eof}          = JSON::PP::true;
    $report{received_hex} = unpack('H*', $rest);
    $reader->append($rest);
    if (!$hixie) {
        my $payload = $reader->next_bytes;
        if (defined $payload && $reader->opcode == 8) {
            $report{reply_opcode} = 8;
            if (length $payload >= 2) {
                $report{reply_code}   = unpack('n', substr($payload, 0, 2));
                $report{reply_reason} = Encode::decode('UTF-8', substr($payload, 2));
            }
        }
        elsif (defined $payload) {
            $report{reply_opcode} = $reader->opcode;
        }
    }
    emit(\%report);
}

sub send_all {
    my ($sock, $bytes) = @_;
    my $offset = 0;
    while ($offset < length $bytes) {
        my $n = syswrite($sock, $bytes, length($bytes) - $offset, $offset);
        die "write failed: $!\n" unless defined $n;
        $offset += $n;
    }
}

# Up to 64 KiB from the socket; undef at EOF (or a reset, reported as EOF).
sub read_some {
    my ($sock) = @_;
    my $n = sysread($sock, my $buf, 65536);
    die "read failed: $!\n" if !defined $n && !$!{ECONNRESET};
    return undef unless $n;
    return $buf;
}

sub printable {
    my ($bytes) = @_;
    my $text = substr($bytes, 0, 300);
    $text =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge;
    return $text;
}
