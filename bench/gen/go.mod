module chathub/bench/gen

go 1.19
