#pragma once

#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

namespace mqtt {

// A value or an error_code: what every fallible call in the library returns.
// (std::expected is C++23; this is the part of it Tern needs.)
template <class T>
class [[nodiscard]] result {
public:
    result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
    result(std::error_code ec) : v_(std::in_place_index<1>, ec) {}
    // Builds the value in place, saving a move of a large T.
    template <class... Args>
    explicit result(std::in_place_t, Args&&... args)
        : v_(std::in_place_index<0>, std::forward<Args>(args)...) {}
    template <class E>
        requires std::is_error_code_enum_v<E>
    result(E e) : v_(std::in_place_index<1>, make_error_code(e)) {}

    bool has_value() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return has_value(); }

    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T&& operator*() && { return std::move(*this).value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    // Replaces the value with an error in place (no temporary result to move from).
    void set_error(std::error_code ec) noexcept { v_.template emplace<1>(ec); }

    std::error_code error() const noexcept {
        return has_value() ? std::error_code{} : std::get<1>(v_);
    }

private:
    std::variant<T, std::error_code> v_;
};

}  // namespace mqtt
